"""A served model version: the registry version behind one endpoint, dispatched on its kind.

The only place in serve/ that knows about ``shopserve.models`` pipelines; generic models run
their ONNX graph directly through the runtime adapter.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shopserve.errors import InputError, UsageError
from shopserve.registry import ModelVersion, Registry
from shopserve.runtime.onnx import OnnxModel, SessionSettings
from shopserve.types import ModelKind, ModelSignature


class ServedModel:
    """One loaded version: tensors in/out for the Open Inference Protocol, plus its domain call."""

    def __init__(self, meta: ModelVersion, files: Mapping[str, Path],
                 settings: SessionSettings) -> None:
        self.meta = meta
        self.kind = meta.kind
        self.pipe: Any
        if meta.kind is ModelKind.GENERIC:
            graph = str(meta.config.get("graph", "model.onnx"))
            if graph not in files:
                raise UsageError(f"{meta.ref}: artifact {graph!r} missing; has {sorted(files)}")
            self.pipe = OnnxModel(Path(files[graph]), settings)
        else:
            from shopserve.models import load_pipeline

            self.pipe = load_pipeline(meta.kind, meta.config, files, settings)

    @classmethod
    def load(cls, registry: Registry, ref: str, settings: SessionSettings) -> ServedModel:
        loaded = registry.load(ref)
        return cls(loaded.meta, loaded.files, settings)

    @property
    def ref(self) -> str:
        return self.meta.ref

    @property
    def version(self) -> int:
        return self.meta.version

    @property
    def signature(self) -> ModelSignature:
        sig: ModelSignature = self.pipe.signature
        return sig

    def run_tensors(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if isinstance(self.pipe, OnnxModel):
            return self.pipe.run(inputs)
        out: dict[str, np.ndarray] = self.pipe.run_tensors(inputs)
        return out

    def rank(self, rows: list[dict[str, Any]]) -> list[float]:
        self._need(ModelKind.RANK, "/v1/rank")
        scores = np.asarray(self.pipe.rank(rows), dtype=np.float64)
        if len(scores) != len(rows):
            raise InputError(f"model returned {len(scores)} scores for {len(rows)} rows")
        return scores.tolist()  # type: ignore[no-any-return]

    def search(self, queries: list[str], k: int) -> list[list[dict[str, Any]]]:
        self._need(ModelKind.SEARCH, "/v1/search")
        return [[_hit(h) for h in hits] for hits in self.pipe.search(queries, k)]

    def recommend(self, customers: Sequence[str | None], k: int) -> list[list[dict[str, Any]]]:
        self._need(ModelKind.RECOMMEND, "/v1/recommend")
        return [[_hit(h) for h in hits] for hits in self.pipe.recommend(list(customers), k)]

    def bm25(self, query: str, k: int) -> list[dict[str, Any]] | None:
        """The catalog's BM25 ranking (search models only): a fallback with no encoder call."""
        pipe = self.pipe
        if self.kind is not ModelKind.SEARCH or not hasattr(pipe, "bm25_only"):
            return None
        scores = pipe.bm25.scores(query)
        return [{"product_id": str(pipe.product_ids[d]), "score": float(scores[d]),
                 "title": str(pipe.titles[d])} for d in pipe.bm25_only([query], k)[0]]

    def warm_up(self) -> None:
        """One call through the graph so that the first request does not pay for it."""
        feed = {s.name: np.zeros([d if d > 0 else 1 for d in s.shape], dtype=_dtype(s.dtype))
                for s in self.signature.inputs}
        # a graph that refuses zeros (e.g. ids out of range) still got its session warm
        with contextlib.suppress(InputError):
            self.run_tensors(feed)

    def _need(self, kind: ModelKind, route: str) -> None:
        if self.kind is not kind:
            raise UsageError(f"model {self.meta.name!r} is a {self.kind.value} model; "
                             f"{route} needs a {kind.value} model")


def _dtype(name: str) -> np.dtype[Any]:
    return np.dtype(object) if name == "string" else np.dtype(name)


def _hit(hit: Any) -> dict[str, Any]:
    return {"product_id": str(hit.product_id), "score": float(hit.score),
            "title": str(getattr(hit, "title", ""))}
