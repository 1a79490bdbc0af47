"""Answer caches: an in-process LRU with TTL, and an optional shared Redis cache.

Redis is optional at run time: when it is slow or gone the cache is bypassed (counted) for a
short while, then tried again, so requests never fail because of it.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson

from shopserve.serve.spec import CacheSpec


def cache_key(*parts: Any) -> str:
    """A short stable key for a request (model version, operation, canonical payload)."""
    raw = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


class LruTtlCache:
    """Least-recently-used entries, each valid for ``ttl_s`` seconds."""

    def __init__(self, size: int, ttl_s: float) -> None:
        self.size = size
        self.ttl_s = ttl_s
        self._data: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def get(self, key: str, allow_stale: bool = False) -> Any | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[0] < time.monotonic() and not allow_stale:
            return None
        self._data.move_to_end(key)
        return entry[1]

    def put(self, key: str, value: Any) -> None:
        if self.size <= 0:
            return
        self._data[key] = (time.monotonic() + self.ttl_s, value)
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)


class RedisCache:
    """The one adapter to Redis. Every failure or timeout opens a bypass window."""

    def __init__(self, spec: CacheSpec, count: Callable[[str], None]) -> None:
        import redis.asyncio as aioredis

        assert spec.redis_url is not None
        self.spec = spec
        self.count = count  # count("hit" | "miss" | "bypass" | "error")
        self.timeout_s = spec.redis_timeout_ms / 1000
        self.client = aioredis.Redis.from_url(
            spec.redis_url, socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s,
            retry_on_timeout=False)
        self.down_until = 0.0

    @property
    def available(self) -> bool:
        return time.monotonic() >= self.down_until

    async def get(self, key: str) -> Any | None:
        if not self.available:
            self.count("bypass")
            return None
        try:
            raw = await asyncio.wait_for(self.client.get("shopserve:" + key), self.timeout_s)
        except Exception:  # timeouts, refused connections, protocol errors: all mean "not now"
            self._fail()
            return None
        self.count("hit" if raw is not None else "miss")
        return None if raw is None else orjson.loads(raw)

    async def put(self, key: str, value: Any) -> None:
        if not self.available:
            return
        try:
            await asyncio.wait_for(
                self.client.set("shopserve:" + key, orjson.dumps(value),
                                px=int(self.spec.ttl_s * 1000)), self.timeout_s)
        except Exception:
            self._fail()

    def _fail(self) -> None:
        self.count("error")
        self.down_until = time.monotonic() + self.spec.redis_retry_s

    async def close(self) -> None:
        await self.client.aclose()
