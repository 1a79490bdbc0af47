"""One entry for serving, batch and optimize: build a model version's pipeline, evaluate it.

Dispatches on ``ModelKind``; the search pipeline is imported only when a search model is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shopserve.errors import NotFoundError, UsageError
from shopserve.runtime.onnx import SessionSettings
from shopserve.types import ModelKind, ModelSignature


class Pipeline(Protocol):
    """What every reference pipeline offers the Open Inference Protocol."""

    @property
    def signature(self) -> ModelSignature: ...

    def run_tensors(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def load_pipeline(
    kind: ModelKind, config: Mapping[str, Any], files: Mapping[str, Path],
    settings: SessionSettings | None = None,
) -> Pipeline:
    """The pipeline of a model version from its kind, config and verified artifact files."""
    if kind is ModelKind.RANK:
        from shopserve.models.rank import RankPipeline

        return RankPipeline(config, files, settings)
    if kind is ModelKind.RECOMMEND:
        from shopserve.models.recommend_pipeline import RecommendPipeline

        return RecommendPipeline(config, files, settings)
    if kind is ModelKind.SEARCH:
        pipe: Pipeline = _search_module().load_search_pipeline(config, files, settings)
        return pipe
    raise UsageError(f"no reference pipeline for model kind {kind.value!r}; "
                     f"serve it through the Open Inference Protocol only")


def evaluate(pipe: Pipeline, eval_path: Path) -> dict[str, float]:
    """Kind-specific quality metrics of ``pipe`` on the held-out rows in ``eval_path``."""
    if not Path(eval_path).is_file():
        raise NotFoundError(f"evaluation file {eval_path} does not exist")
    from shopserve.models.rank import RankPipeline, evaluate_rank

    if isinstance(pipe, RankPipeline):
        return evaluate_rank(pipe, Path(eval_path))
    from shopserve.models.recommend_pipeline import RecommendPipeline, evaluate_recommend

    if isinstance(pipe, RecommendPipeline):
        return evaluate_recommend(pipe, Path(eval_path))
    metrics: dict[str, float] = _search_module().evaluate_search(pipe, Path(eval_path))
    return metrics


def _search_module() -> Any:
    """``shopserve.models.search``, imported lazily: it brings the tokenizer and ANN index."""
    import importlib

    try:
        return importlib.import_module("shopserve.models.search")
    except ModuleNotFoundError as exc:
        raise UsageError(f"the search pipeline is not available here: {exc}") from exc
