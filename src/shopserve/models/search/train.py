"""``train_search``: export the encoder, embed and index the catalog, fit the re-ranker.

Everything is written under ``out_dir`` and evaluated on the held-out queries before the
``TrainedModel`` is returned; a failure leaves no half-written model behind.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from shopserve.config import home_settings
from shopserve.errors import ConflictError
from shopserve.models.base import EVAL_FILE, TrainedModel, file_hash
from shopserve.models.search.ann import VectorIndex
from shopserve.models.search.data import HasSearchData, SearchData, split_shop
from shopserve.models.search.encoder import ExportedEncoder, TextEncoder
from shopserve.models.search.evaluate import evaluate_search, judged_queries
from shopserve.models.search.features import FEATURE_NAMES
from shopserve.models.search.pipeline import SearchPipeline
from shopserve.models.search.reranker import (
    LinearRanker,
    RankGroup,
    fit_ranker,
    ranker_to_onnx,
)
from shopserve.models.search.settings import SearchTrainSpec
from shopserve.models.search.tokenizer import QueryTokenizer
from shopserve.runtime.onnx import SessionSettings
from shopserve.types import ModelKind

ENCODER_FILE = "encoder.onnx"
FILES = (ENCODER_FILE, "tokenizer.json", "catalog.parquet", "embeddings.npy", "index.hnsw",
         "reranker.onnx", EVAL_FILE)


def default_cache_dir() -> Path:
    return home_settings().home_dir / "cache" / "search-encoder"


def train_search(
    shop: HasSearchData, out_dir: Path, spec: SearchTrainSpec | None = None,
    settings: SessionSettings | None = None, encoder: ExportedEncoder | None = None,
) -> TrainedModel:
    """Train the search model on ``shop`` into ``out_dir`` (created; must not hold a model).

    ``encoder`` is an already exported text encoder (graph with an ``embedding`` output, and its
    ``tokenizer.json``); by default all-MiniLM-L6-v2 is exported, which needs the [train] extra.
    """
    spec = spec or SearchTrainSpec()
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConflictError(f"{out_dir}: already exists and is not an empty folder; "
                            f"give a new folder for the search model")
    data = split_shop(shop, spec)
    if encoder is None:
        from shopserve.models.search.export import export_encoder

        encoder = export_encoder(spec.cache_dir or default_cache_dir())
    exported = encoder
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".search-", dir=out_dir.parent))
    try:
        shutil.copyfile(exported.graph, staging / ENCODER_FILE)
        shutil.copyfile(exported.tokenizer, staging / "tokenizer.json")
        _write_catalog(data, staging, spec, settings)
        pq.write_table(data.held_out.select(["query", "product_id", "title", "relevance"]),
                       staging / EVAL_FILE)
        config = {"graph": ENCODER_FILE, "search": spec.search.model_dump(mode="json"),
                  "features": list(FEATURE_NAMES)}
        files = {name: staging / name for name in FILES}
        _bootstrap_ranker(staging / "reranker.onnx")
        ranker = fit_ranker(_rank_groups(SearchPipeline(config, files, settings), data, spec),
                            epochs=spec.epochs, seed=spec.seed)
        (staging / "reranker.onnx").write_bytes(ranker_to_onnx(ranker))
        if out_dir.is_dir():
            out_dir.rmdir()  # checked empty above; rename cannot replace a folder otherwise
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = {name: out_dir / name for name in FILES}
    pipe = SearchPipeline(config, files, settings)
    metrics = evaluate_search(pipe, files[EVAL_FILE])
    metrics["export_max_abs_diff"] = exported.max_abs_diff
    return TrainedModel(kind=ModelKind.SEARCH, files=files, config=config,
                        signature=pipe.signature, metrics=metrics,
                        data_hash=file_hash(files[EVAL_FILE]))


def _write_catalog(
    data: SearchData, out: Path, spec: SearchTrainSpec, settings: SessionSettings | None
) -> None:
    tokenizer = QueryTokenizer(out / "tokenizer.json", spec.title_tokens)
    encoder = TextEncoder(out / ENCODER_FILE, tokenizer, settings)
    titles = [str(t) for t in data.catalog.column("title").to_pylist()]
    vectors = encoder.encode(titles)
    np.save(out / "embeddings.npy", vectors, allow_pickle=False)
    VectorIndex.build(vectors, seed=spec.seed).save(out / "index.hnsw")
    pq.write_table(data.catalog, out / "catalog.parquet")


def _bootstrap_ranker(path: Path) -> None:
    """A cosine-only ranker, so the pipeline loads while candidates for training are drawn."""
    n = len(FEATURE_NAMES)
    weights = np.zeros(n, dtype=np.float32)
    weights[FEATURE_NAMES.index("cosine")] = 1.0
    ones = np.ones(n, dtype=np.float32)
    path.write_bytes(ranker_to_onnx(LinearRanker(np.zeros(n, np.float32), ones, weights)))


def _rank_groups(pipe: SearchPipeline, data: SearchData, spec: SearchTrainSpec) -> list[RankGroup]:
    """Retrieved candidates of each training query, labelled by judgment (unjudged = 1.0)."""
    queries, judged = judged_queries(data.train)
    rng = np.random.default_rng(spec.seed)
    position = {pid: i for i, pid in enumerate(pipe.product_ids)}
    groups = []
    for start in range(0, len(queries), 256):
        chunk = queries[start : start + 256]
        for (cands, feats), truth in zip(
            pipe.candidates(chunk), judged[start : start + 256], strict=True
        ):
            rel = {position[p]: r for p, r in truth.items() if p in position}
            labels = np.array([rel.get(int(c), 1.0) for c in cands], dtype=np.float64)
            is_judged = np.array([int(c) in rel for c in cands])
            unjudged = np.flatnonzero(~is_judged)
            take = rng.permutation(unjudged)[: spec.negatives_per_query]
            keep = np.concatenate([np.flatnonzero(is_judged), take])
            groups.append(RankGroup(feats[keep], labels[keep]))
    return groups

