"""One served endpoint: its stable version, optional canary and shadow, and their batchers.

The batch functions here turn many requests into one model call and split the answers back.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from shopserve.errors import UsageError
from shopserve.monitor import metrics as monitor_metrics
from shopserve.monitor.buffer import release
from shopserve.serve import metrics
from shopserve.serve.admission import AdmissionPolicy
from shopserve.serve.backends import ServedModel
from shopserve.serve.batching import Batcher
from shopserve.serve.spec import ModelSpec
from shopserve.types import ModelKind

OPS = ("rank", "search", "recommend", "infer")
OP_KIND = {"rank": ModelKind.RANK, "search": ModelKind.SEARCH, "recommend": ModelKind.RECOMMEND}


class VersionRunner:
    """A loaded version with one batcher per operation it supports."""

    def __init__(self, endpoint: str, model: ServedModel, spec: ModelSpec,
                 admission: AdmissionPolicy | None = None) -> None:
        self.endpoint = endpoint
        self.model = model
        self.batchers: dict[str, Batcher[Any, Any]] = {}
        version = str(model.version)
        # counted in the process, flushed to /metrics about once a second
        self._hist = hist = metrics.batch_size(endpoint, version)
        self._calls = metrics.version_counter(metrics.VERSION_CALLS, endpoint, version)
        self._errors = metrics.version_counter(metrics.VERSION_ERRORS, endpoint, version)
        self._seconds = metrics.version_counter(metrics.VERSION_SECONDS, endpoint, version)
        self._score_sum = metrics.version_counter(metrics.SCORES, endpoint, version)
        self._scored = metrics.version_counter(metrics.SCORED, endpoint, version)
        self._model_seconds = monitor_metrics.model_duration(endpoint, version)
        self._waited = waited = monitor_metrics.queue_wait(endpoint, version)
        for op, run in self._ops().items():
            self.batchers[op] = Batcher(
                self._timed(run), spec.batching.max_batch_size,
                spec.batching.max_queue_delay_ms / 1000, spec.queue_limit, hist.observe,
                inline=not spec.batching.threaded, on_wait=waited.observe, admission=admission,
                name=(endpoint, version))

    def _ops(self) -> dict[str, Callable[[list[Any]], list[Any]]]:
        ops: dict[str, Callable[[list[Any]], list[Any]]] = {"infer": self._infer}
        if self.model.kind is ModelKind.RANK:
            ops["rank"] = self._rank
        if self.model.kind is ModelKind.SEARCH:
            ops["search"] = self._search
        if self.model.kind is ModelKind.RECOMMEND:
            ops["recommend"] = self._recommend
        return ops

    def _timed(self, run: Callable[[list[Any]], list[Any]]) -> Callable[[list[Any]], list[Any]]:
        def call(payloads: list[Any]) -> list[Any]:
            start = time.perf_counter()
            self._calls.inc()
            try:
                return run(payloads)
            except Exception:
                self._errors.inc()
                raise
            finally:
                elapsed = time.perf_counter() - start
                self._seconds.inc(elapsed)
                self._model_seconds.observe(elapsed)
        return call

    def _rank(self, payloads: list[list[dict[str, Any]]]) -> list[list[float]]:
        rows = [row for rows in payloads for row in rows]
        scores = self.model.rank(rows)
        self._score_sum.inc(float(sum(scores)))  # once per batch, for the canary guard
        self._scored.inc(len(scores))
        out, pos = [], 0
        for rows in payloads:
            out.append(scores[pos:pos + len(rows)])
            pos += len(rows)
        return out

    def _search(self, payloads: list[tuple[str, int]]) -> list[list[dict[str, Any]]]:
        k = max(p[1] for p in payloads)
        hits = self.model.search([p[0] for p in payloads], k)
        return [h[:p[1]] for h, p in zip(hits, payloads, strict=True)]

    def _recommend(self, payloads: list[tuple[str | None, int]]) -> list[list[dict[str, Any]]]:
        k = max(p[1] for p in payloads)
        hits = self.model.recommend([p[0] for p in payloads], k)
        return [h[:p[1]] for h, p in zip(hits, payloads, strict=True)]

    def _infer(self, payloads: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        if len(payloads) > 1 and self._stackable(payloads):
            sizes = [len(next(iter(p.values()))) for p in payloads]
            joined = {n: np.concatenate([p[n] for p in payloads]) for n in payloads[0]}
            outs = self.model.run_tensors(joined)
            if all(v.ndim > 0 and len(v) == sum(sizes) for v in outs.values()):
                bounds = np.cumsum([0, *sizes])
                return [{n: v[a:b] for n, v in outs.items()}
                        for a, b in itertools.pairwise(bounds)]
        return [self.model.run_tensors(p) for p in payloads]

    def _stackable(self, payloads: list[dict[str, np.ndarray]]) -> bool:
        sig = self.model.signature
        if not all(s.shape and s.shape[0] == -1 for s in sig.inputs):
            return False
        first = {n: (a.shape[1:], a.dtype) for n, a in payloads[0].items()}
        return all(p.keys() == first.keys() and all(
            a.ndim > 0 and (a.shape[1:], a.dtype) == first[n] for n, a in p.items())
            for p in payloads)

    def close(self) -> None:
        for batcher in self.batchers.values():
            batcher.close()
        release(self._hist, self._waited, self._calls, self._errors, self._seconds,
                self._score_sum, self._scored, self._model_seconds)


class Endpoint:
    """The versions behind one model name and how traffic is split between them."""

    def __init__(self, spec: ModelSpec, stable: VersionRunner,
                 canary: VersionRunner | None = None, shadow: VersionRunner | None = None) -> None:
        self.spec = spec
        self.name = spec.endpoint
        self.stable = stable
        self.canary = canary
        self.canary_weight = spec.canary.weight if spec.canary else 0.0
        self.shadow = shadow
        self.shadow_fraction = spec.shadow.fraction if spec.shadow else 0.0

    @property
    def kind(self) -> ModelKind:
        return self.stable.model.kind

    def choose(self) -> VersionRunner:
        if self.canary is not None and random.random() < self.canary_weight:
            return self.canary
        return self.stable

    def runners(self) -> list[VersionRunner]:
        return [r for r in (self.stable, self.canary, self.shadow) if r is not None]

    def version(self, version: str | None) -> VersionRunner:
        if version is None or version == "":
            return self.stable
        for runner in self.runners():
            if str(runner.model.version) == version:
                return runner
        from shopserve.errors import NotFoundError

        raise NotFoundError(f"model {self.name!r} has no served version {version!r}; serving "
                            f"{[r.model.version for r in self.runners()]}")

    def check_op(self, op: str) -> None:
        want = OP_KIND.get(op)
        if want is not None and self.kind is not want:
            raise UsageError(f"model {self.name!r} is a {self.kind.value} model; /v1/{op} needs "
                             f"a {want.value} model")
