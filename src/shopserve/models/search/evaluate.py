"""Held-out quality of a search pipeline: the full pipeline, BM25 alone and the encoder alone."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from shopserve.errors import InputError
from shopserve.models.search.metrics import mean_metrics
from shopserve.models.search.pipeline import SearchPipeline

EVAL_COLUMNS = ("query", "product_id", "relevance")
DEPTH = 100
CHUNK = 256


def judged_queries(table: pa.Table) -> tuple[list[str], list[dict[str, float]]]:
    """Distinct queries (first-seen order) and each one's ``{product_id: relevance}``."""
    missing = [c for c in EVAL_COLUMNS if c not in table.column_names]
    if missing:
        raise InputError(f"search evaluation rows lack column(s) {missing}; "
                         f"expected {list(EVAL_COLUMNS)}")
    judged: dict[str, dict[str, float]] = {}
    for q, pid, rel in zip(*(table.column(c).to_pylist() for c in EVAL_COLUMNS), strict=True):
        judged.setdefault(str(q), {})[str(pid)] = float(rel)
    if not judged:
        raise InputError("search evaluation rows are empty")
    return list(judged), list(judged.values())


def evaluate_search(pipe: SearchPipeline, eval_path: Path) -> dict[str, float]:
    """NDCG@10 and recall@100 of the pipeline, of BM25 alone and of the encoder alone."""
    queries, judged = judged_queries(pq.read_table(eval_path, columns=list(EVAL_COLUMNS)))
    full, lexical, dense = [], [], []
    for start in range(0, len(queries), CHUNK):
        chunk = queries[start : start + CHUNK]
        full += [[pipe.product_ids[d] for d in docs] for docs, _ in pipe.rank(chunk, DEPTH)]
        lexical += [[pipe.product_ids[d] for d in docs] for docs in pipe.bm25_only(chunk, DEPTH)]
        dense += [[pipe.product_ids[d] for d in docs] for docs in pipe.dense_only(chunk, DEPTH)]
    metrics = mean_metrics(full, judged)
    metrics.update(mean_metrics(lexical, judged, prefix="bm25_"))
    metrics.update(mean_metrics(dense, judged, prefix="encoder_"))
    metrics["eval_queries"] = float(len(queries))
    return metrics
