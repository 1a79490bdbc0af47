"""Product search: MiniLM bi-encoder (ONNX), HNSW index, BM25 and a learned re-ranker.

``load_search_pipeline`` and ``evaluate_search`` are what ``shopserve.models`` dispatches to;
``train_search`` builds a version's artifacts (the export needs the ``[train]`` extra).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shopserve.models.search.bm25 import BM25Index, analyze
from shopserve.models.search.evaluate import evaluate_search
from shopserve.models.search.features import FEATURE_NAMES
from shopserve.models.search.pipeline import SearchPipeline
from shopserve.models.search.settings import SearchSettings, SearchTrainSpec
from shopserve.models.search.tokenizer import QueryTokenizer
from shopserve.models.search.train import train_search
from shopserve.runtime.onnx import SessionSettings


def load_search_pipeline(
    config: Mapping[str, Any], files: Mapping[str, Path], settings: SessionSettings | None = None
) -> SearchPipeline:
    """The search pipeline of a version from its config and verified artifact files."""
    return SearchPipeline(config, files, settings)


__all__ = [
    "FEATURE_NAMES",
    "BM25Index",
    "QueryTokenizer",
    "SearchPipeline",
    "SearchSettings",
    "SearchTrainSpec",
    "analyze",
    "evaluate_search",
    "load_search_pipeline",
    "train_search",
]
