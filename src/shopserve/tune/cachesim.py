"""Exact simulation of shopserve's in-process answer cache (LRU with TTL) over a request stream.

It follows ``serve.cache.LruTtlCache`` step by step: a lookup hits when the key is present and
not expired (and then becomes most recent); an expired entry is a miss that keeps its place until
the answer is stored again; every miss stores the answer and evicts the least recent entries.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field


class LruTtlSimulator:
    """One cache of ``size`` entries (``None``: unbounded) whose answers live ``ttl_s`` seconds."""

    def __init__(self, size: int | None, ttl_s: float) -> None:
        if size is not None and size < 0:
            raise ValueError(f"cache size must be 0 or more, got {size}")
        if not ttl_s > 0:
            raise ValueError(f"ttl must be positive, got {ttl_s}")
        self.size = size
        self.ttl_s = ttl_s
        self.hits = 0
        self.requests = 0
        self._data: OrderedDict[Hashable, float] = OrderedDict()

    def feed(self, keys: Sequence[Hashable], times: Sequence[float]) -> None:
        """Simulate requests for ``keys`` at ``times`` (seconds, not decreasing)."""
        data, ttl, size = self._data, self.ttl_s, self.size
        get, move = data.get, data.move_to_end
        hits = 0
        for key, now in zip(keys, times, strict=True):
            expires = get(key)
            if expires is not None and expires >= now:
                move(key)
                hits += 1
                continue
            if size == 0:
                continue
            data[key] = now + ttl
            move(key)
            if size is not None and len(data) > size:
                data.popitem(last=False)
        self.hits += hits
        self.requests += len(keys)

    @property
    def hit_ratio(self) -> float:
        return self.hits / self.requests if self.requests else 0.0


@dataclass
class KeyCounts:
    """How often each key was asked for: the skew of the traffic."""

    counts: Counter[Hashable] = field(default_factory=Counter)

    def feed(self, keys: Sequence[Hashable]) -> None:
        self.counts.update(keys)

    @property
    def distinct(self) -> int:
        return len(self.counts)

    def top_share(self, fraction: float = 0.01) -> tuple[int, float]:
        """The number of top ``fraction`` keys (at least one) and their share of requests."""
        total = sum(self.counts.values())
        if not total:
            return 0, 0.0
        top = max(1, math.ceil(len(self.counts) * fraction))
        return top, sum(c for _, c in self.counts.most_common(top)) / total
