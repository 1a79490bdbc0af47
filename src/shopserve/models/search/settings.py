"""Typed settings of the search pipeline (stored in a version's config) and of its training."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class SearchSettings(BaseModel):
    """How a search pipeline retrieves and limits requests; saved as ``config["search"]``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    candidates: int = Field(default=100, ge=1, le=2000)  # from each retriever (ANN and BM25)
    ef_search: int = Field(default=128, ge=1)  # HNSW search breadth (raised to ``candidates``)
    query_tokens: int = Field(default=32, ge=2, le=512)  # longer queries are truncated
    max_query_chars: int = Field(default=512, ge=1)  # longer queries are refused
    max_batch: int = Field(default=1024, ge=1)  # most queries in one call
    bm25_k1: float = Field(default=1.2, ge=0.0)
    bm25_b: float = Field(default=0.75, ge=0.0, le=1.0)


class SearchTrainSpec(BaseModel):
    """What ``train_search`` does: split, sample sizes and where the encoder export is cached."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    search: SearchSettings = Field(default_factory=SearchSettings)
    eval_percent: int = Field(default=20, ge=1, le=90)  # held-out share, by query-text hash
    # A sample of queries; their judged products then form the catalog.
    max_queries: int | None = Field(default=None, ge=10)
    title_tokens: int = Field(default=48, ge=8, le=512)
    negatives_per_query: int = Field(default=20, ge=0)  # unjudged candidates used as non-relevant
    epochs: int = Field(default=200, ge=1)
    seed: int = 0
    cache_dir: Path | None = None  # defaults to $SHOPSERVE_HOME/cache/search-encoder
