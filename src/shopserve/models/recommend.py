"""Training of the recommender: ALS on purchases split by time, against two simple baselines.

Writes the item-index graph, customer and item lists as JSON, and the held-out pairs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnx
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from shopserve.errors import InputError
from shopserve.models.als import AlsSpec, train_als
from shopserve.models.base import EVAL_FILE, GRAPH_FILE, TrainedModel, file_hash
from shopserve.models.interactions import (
    Interactions,
    build_interactions,
    check_purchases,
    cooccurrence_scores,
    held_out,
    popularity,
    split_by_time,
)
from shopserve.models.metrics import recall_ndcg_at_k
from shopserve.models.recommend_index import index_tables, index_to_onnx
from shopserve.models.recommend_pipeline import (
    CUSTOMERS_FILE,
    EVAL_K,
    ITEMS_FILE,
    RecommendPipeline,
    evaluate_recommend,
)
from shopserve.types import ModelKind


class RecommendTrainSpec(BaseModel):
    """Settings of ``train_recommender``: time split, ALS, and how many items the index keeps."""

    model_config = ConfigDict(frozen=True)

    test_weeks: int = Field(default=2, ge=1)
    max_k: int = Field(default=100, ge=1)
    als: AlsSpec = AlsSpec()


class _HasPurchases(Protocol):
    @property
    def purchases(self) -> pa.Table: ...

    @property
    def catalog(self) -> pa.Table: ...


def train_recommender(
    shop: _HasPurchases, out_dir: Path, spec: RecommendTrainSpec | None = None
) -> TrainedModel:
    """Train on the shop's purchases; titles come from its catalog."""
    return train_recommender_table(shop.purchases, out_dir, spec, catalog=shop.catalog)


def _titles(items: list[str], purchases: pa.Table, catalog: pa.Table | None) -> list[str]:
    names: dict[str, str] = {}
    if "description" in purchases.schema.names:
        names.update(zip(purchases.column("product_id").to_pylist(),
                         purchases.column("description").to_pylist(), strict=True))
    if catalog is not None and {"product_id", "title"} <= set(catalog.schema.names):
        names.update(zip(catalog.column("product_id").to_pylist(),
                         catalog.column("title").to_pylist(), strict=True))
    return [str(names.get(p) or "") for p in items]


def baseline_metrics(inter: Interactions, customers: list[str], truth: list[set[str]],
                     k: int) -> dict[str, float]:
    """Recall and NDCG of popularity and of item-to-item co-occurrence on the same customers."""
    top_pop = np.argsort(-popularity(inter), kind="stable")[:k]
    pop_recs = [[inter.items[i] for i in top_pop]] * len(customers)
    pos = {c: i for i, c in enumerate(inter.customers)}
    rows = np.array([pos[c] for c in customers], dtype=np.int64)
    co = cooccurrence_scores(inter, rows)
    co_recs = [[inter.items[i] for i in np.argsort(-r, kind="stable")[:k]] for r in co]
    out: dict[str, float] = {}
    for name, recs in (("popularity", pop_recs), ("cooccurrence", co_recs)):
        recall, ndcg = recall_ndcg_at_k(recs, truth, k)
        out[f"baseline_{name}_recall_at_{k}"] = recall
        out[f"baseline_{name}_ndcg_at_{k}"] = ndcg
    return out


def train_recommender_table(
    purchases: pa.Table, out_dir: Path, spec: RecommendTrainSpec | None = None,
    catalog: pa.Table | None = None,
) -> TrainedModel:
    """ALS on the purchases before the test window; evaluation on the window's purchases."""
    spec = spec or RecommendTrainSpec()
    train, test, cutoff = split_by_time(check_purchases(purchases), spec.test_weeks)
    inter = build_interactions(train)
    customers, truth = held_out(test, inter)
    if not customers:
        raise InputError(f"no customer bought a known item after {cutoff}; nothing to evaluate")
    users_f, items_f = train_als(spec.als, inter.user, inter.item, inter.weight,
                                 len(inter.customers), len(inter.items))
    k = min(spec.max_k, len(inter.items))
    graph = index_to_onnx(*index_tables(users_f, items_f, popularity(inter)), k)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {name: out_dir / name for name in (GRAPH_FILE, CUSTOMERS_FILE, ITEMS_FILE, EVAL_FILE)}
    onnx.save(graph, files[GRAPH_FILE])
    files[CUSTOMERS_FILE].write_text(json.dumps({"customer_ids": inter.customers}), "utf-8")
    items = {"product_ids": inter.items, "titles": _titles(inter.items, purchases, catalog)}
    files[ITEMS_FILE].write_text(json.dumps(items), "utf-8")
    pq.write_table(pa.table({"customer_id": customers,
                             "product_ids": [sorted(t) for t in truth]}), files[EVAL_FILE])
    config: dict[str, Any] = {
        "graph": GRAPH_FILE, "max_k": k, "unknown_customers": "popularity",
        "cutoff": cutoff.isoformat(), "als": spec.als.model_dump(mode="json"),
    }
    pipe = RecommendPipeline(config, files)
    metrics = evaluate_recommend(pipe, files[EVAL_FILE])
    metrics.update(baseline_metrics(inter, customers, truth, min(EVAL_K, k)))
    return TrainedModel(kind=ModelKind.RECOMMEND, files=files, config=config,
                        signature=pipe.signature, metrics=metrics,
                        data_hash=file_hash(files[EVAL_FILE]))
