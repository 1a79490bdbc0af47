"""The protocol-neutral serving core: choose a version, consult caches, batch, fall back.

The HTTP adapter (``http.py``) only parses requests into calls on ``DataPlane`` and turns its
``Answer``s and errors into responses.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from shopserve.errors import (
    DeadlineExceededError,
    InputError,
    NotFoundError,
    OverloadedError,
    UsageError,
)
from shopserve.registry import Registry
from shopserve.runtime.onnx import Device, SessionSettings
from shopserve.serve import metrics
from shopserve.serve.admission import AdmissionPolicy
from shopserve.serve.backends import ServedModel
from shopserve.serve.cache import LruTtlCache, RedisCache, cache_key
from shopserve.serve.endpoints import Endpoint, VersionRunner
from shopserve.serve.spec import DeploymentSpec, ModelSpec


@dataclass(frozen=True)
class Answer:
    """What a model (or its fallback) answered, and who answered."""

    result: Any
    model: str
    version: int
    fallback: str | None = None  # None, "last_good", "popular", "bm25"
    cached: bool = False

    def envelope(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "fallback": self.fallback is not None,
                "fallback_source": self.fallback, "cached": self.cached}


class DataPlane:
    """Every endpoint of a deployment, loaded and warmed in this process."""

    def __init__(self, spec: DeploymentSpec, endpoints: dict[str, Endpoint],
                 admission: AdmissionPolicy | None = None) -> None:
        self.spec = spec
        self.endpoints = endpoints
        # in-flight requests of this replica: the HTTP entry admits, the batchers read it
        self.admission = admission or AdmissionPolicy(spec.in_flight_limit)
        self.lru = LruTtlCache(spec.cache.size, spec.cache.ttl_s)
        self.last_good = LruTtlCache(max(spec.cache.size, 1000), spec.cache.ttl_s)
        self.redis: RedisCache | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.ready = False
        # called with (op, payload, answer) for every domain answer (monitoring); must be cheap
        self.on_answer: Callable[[str, Any, Answer], None] | None = None

    @classmethod
    def load(cls, spec: DeploymentSpec, refs: dict[str, str] | None = None) -> DataPlane:
        """Load every version named by ``spec`` (``refs`` overrides stable refs by name)."""
        registry = Registry.open(spec.home)
        settings = SessionSettings(device=Device(spec.server.device),
                                   intra_op_threads=spec.server.threads)
        endpoints: dict[str, Endpoint] = {}
        admission = AdmissionPolicy(spec.in_flight_limit)
        for m in spec.models:
            def runner(ref: str, m: ModelSpec = m) -> VersionRunner:
                return VersionRunner(m.endpoint, ServedModel.load(registry, ref, settings), m,
                                     admission)
            stable = runner((refs or {}).get(m.endpoint, m.ref))
            endpoints[m.endpoint] = Endpoint(
                m, stable, runner(m.canary.ref) if m.canary else None,
                runner(m.shadow.ref) if m.shadow else None)
        return cls(spec, endpoints, admission)

    def warm_up(self) -> None:
        for endpoint in self.endpoints.values():
            for r in endpoint.runners():
                r.model.warm_up()
        if self.spec.cache.redis_url:
            self.redis = RedisCache(self.spec.cache,
                                    lambda r: metrics.cache_result("redis", r).inc())
        self.ready = True

    def endpoint(self, name: str) -> Endpoint:
        try:
            return self.endpoints[name]
        except KeyError:
            raise NotFoundError(f"unknown model {name!r}; serving {sorted(self.endpoints)}") \
                from None

    def deadline(self, endpoint: Endpoint, timeout_ms: float | None) -> float:
        limit = endpoint.spec.timeout_ms
        if timeout_ms is not None:
            if not 0 < timeout_ms <= 600_000:
                raise InputError(f"timeout_ms must be between 0 and 600000, got {timeout_ms}")
            limit = min(limit, timeout_ms)
        return time.monotonic() + limit / 1000

    async def answer(self, name: str, op: str, payload: Any, size: int,
                     timeout_ms: float | None = None) -> Answer:
        """The answer of model ``name`` to a domain operation, from cache, model or fallback."""
        endpoint = self.endpoint(name)
        endpoint.check_op(op)
        deadline = self.deadline(endpoint, timeout_ms)
        runner = endpoint.choose()
        model, version = endpoint.name, runner.model.version
        key = cache_key(runner.model.ref, op, payload)
        cached = await self._cached(key) if endpoint.spec.cache else None
        if cached is not None:
            return self._answered(op, payload, Answer(cached, model, version, cached=True))
        try:
            result = await runner.batchers[op].submit(payload, size, deadline)
        except (UsageError, OverloadedError):
            raise  # the client's mistake or back-pressure: no fallback hides it
        except Exception as exc:  # deadline passed or the model failed: answer degraded
            reason = "deadline" if isinstance(exc, DeadlineExceededError) else "model_error"
            metrics.rejected(model, reason).inc()
            fallback = self._fallback(endpoint, op, payload, key)
            if fallback is None:
                raise
            return self._answered(op, payload,
                                  Answer(fallback[1], model, version, fallback=fallback[0]))
        self._remember(endpoint, key, result)
        self._mirror(endpoint, op, payload, size, result)
        return self._answered(op, payload, Answer(result, model, version))

    def _answered(self, op: str, payload: Any, answer: Answer) -> Answer:
        if self.on_answer is not None:
            self.on_answer(op, payload, answer)
        return answer

    async def infer(self, name: str, version: str | None,
                    inputs: dict[str, np.ndarray]) -> tuple[ServedModel, dict[str, np.ndarray]]:
        endpoint = self.endpoint(name)
        runner = endpoint.version(version)
        checked = self._check_tensors(runner.model, inputs)
        size = max((len(a) if a.ndim else 1) for a in checked.values()) if checked else 1
        out = await runner.batchers["infer"].submit(checked, size, self.deadline(endpoint, None))
        return runner.model, out

    def _check_tensors(self, model: ServedModel, inputs: dict[str, np.ndarray]) \
            -> dict[str, np.ndarray]:
        from shopserve.runtime.onnx import check_tensor

        names = [s.name for s in model.signature.inputs]
        unknown = sorted(set(inputs) - set(names))
        if unknown:
            raise InputError(f"unknown input(s) {unknown}; model takes {names}")
        checked = {}
        for spec in model.signature.inputs:
            if spec.name not in inputs:
                raise InputError(f"missing input {spec.name!r} ({spec.dtype}{list(spec.shape)})")
            if inputs[spec.name].dtype == object and spec.dtype not in ("string", "object"):
                raise InputError(f"input {spec.name!r}: expected {spec.dtype}, got BYTES")
            checked[spec.name] = check_tensor(spec, inputs[spec.name])
        return checked

    async def _cached(self, key: str) -> Any | None:
        hit = self.lru.get(key)
        if self.spec.cache.size:
            metrics.cache_result("memory", "hit" if hit is not None else "miss").inc()
        if hit is None and self.redis is not None:
            hit = await self.redis.get(key)
            if hit is not None:
                self.lru.put(key, hit)
        return hit

    def _remember(self, endpoint: Endpoint, key: str, result: Any) -> None:
        if endpoint.spec.fallback.last_good:
            self.last_good.put(key, result)
        if not endpoint.spec.cache:
            return
        self.lru.put(key, result)
        if self.redis is not None:
            self._spawn(self.redis.put(key, result))

    def _fallback(self, endpoint: Endpoint, op: str, payload: Any,
                  key: str) -> tuple[str, Any] | None:
        spec = endpoint.spec.fallback
        source: tuple[str, Any] | None = None
        last = self.last_good.get(key, allow_stale=True) if spec.last_good else None
        bm25 = (endpoint.stable.model.bm25(payload[0], int(payload[1]))
                if spec.bm25 and op == "search" and last is None else None)
        if last is not None:
            source = ("last_good", last)
        elif bm25 is not None:
            source = ("bm25", bm25)
        elif spec.popular and op in ("search", "recommend"):
            k = int(payload[1])
            source = ("popular", [{"product_id": p, "score": 0.0, "title": ""}
                                  for p in spec.popular[:k]])
        if source is not None:
            metrics.fallbacks(endpoint.name, source[0]).inc()
        return source

    def _mirror(self, endpoint: Endpoint, op: str, payload: Any, size: int, result: Any) -> None:
        shadow = endpoint.shadow
        if (shadow is None or op not in shadow.batchers
                or random.random() >= endpoint.shadow_fraction):
            return

        async def compare() -> None:
            try:
                theirs = await shadow.batchers[op].submit(payload, size, time.monotonic() + 5)
            except Exception:  # shadow failures are counted, never seen by the caller
                metrics.shadow(endpoint.name, "error").inc()
                return
            same = theirs == result if op != "rank" else bool(
                np.allclose(theirs, result, atol=1e-3))
            metrics.shadow(endpoint.name, "same" if same else "different").inc()

        self._spawn(compare())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        for endpoint in self.endpoints.values():
            for r in endpoint.runners():
                r.close()
        if self.redis is not None:
            await self.redis.close()
