"""The recommendation pipeline: customer ids → item-index graph → ``Hit`` lists.

Customers not seen in training (and ``None``) are answered from the popularity row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from shopserve.errors import InputError, IntegrityError
from shopserve.models.base import Hit
from shopserve.models.metrics import recall_ndcg_at_k
from shopserve.models.rank import artifact
from shopserve.runtime.onnx import OnnxModel, SessionSettings
from shopserve.types import ModelSignature

CUSTOMERS_FILE = "customers.json"
ITEMS_FILE = "items.json"
EVAL_K = 20


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"{path}: cannot read JSON: {exc}") from exc


class RecommendPipeline:
    """Top-k items per customer from the version's item-index graph."""

    def __init__(self, config: Mapping[str, Any], files: Mapping[str, Path],
                 settings: SessionSettings | None = None) -> None:
        self.graph_name = str(config.get("graph", "model.onnx"))
        self.model = OnnxModel(artifact(files, self.graph_name), settings)
        customers = read_json(artifact(files, CUSTOMERS_FILE))["customer_ids"]
        items = read_json(artifact(files, ITEMS_FILE))
        self.customer_pos = {str(c): i for i, c in enumerate(customers)}
        self.unknown = len(customers)
        self.product_ids: list[str] = [str(p) for p in items["product_ids"]]
        self.titles: list[str] = [str(t) for t in items["titles"]]
        self.max_k = int(self.model.signature.outputs[0].shape[1])

    @property
    def signature(self) -> ModelSignature:
        return self.model.signature

    def run_tensors(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        customer = np.asarray(inputs.get("customer", np.zeros(0, np.int64)))
        if customer.size and (customer.min() < 0 or customer.max() > self.unknown):
            raise InputError(f"input 'customer': positions must lie in 0..{self.unknown}")
        return self.model.run(inputs)

    def positions(self, customers: Sequence[str | None]) -> np.ndarray:
        out = np.empty(len(customers), dtype=np.int64)
        for i, c in enumerate(customers):
            if c is not None and not isinstance(c, str):
                raise InputError(f"customers[{i}]: expected a customer id string or null, "
                                 f"got {c!r}")
            out[i] = self.unknown if c is None else self.customer_pos.get(c, self.unknown)
        return out

    def recommend(self, customers: Sequence[str | None], k: int) -> list[list[Hit]]:
        """``k`` hits per customer, best first, in the order the customers were given."""
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.max_k:
            raise InputError(f"k: expected a whole number from 1 to {self.max_k}, got {k!r}")
        if not customers:
            return []
        out = self.model.run({"customer": self.positions(customers)}, check=False)
        scores, items = out["scores"][:, :k], out["items"][:, :k]
        return [[Hit(self.product_ids[int(i)], float(s), self.titles[int(i)])
                 for s, i in zip(srow, irow, strict=True)]
                for srow, irow in zip(scores, items, strict=True)]


def evaluate_recommend(pipe: RecommendPipeline, eval_path: Path) -> dict[str, float]:
    """Recall@20 and NDCG@20 over the held-out (customer, items) pairs in ``eval_path``."""
    table = pq.read_table(eval_path)
    for name in ("customer_id", "product_ids"):
        if name not in table.schema.names:
            raise InputError(f"{eval_path}: missing column {name!r}")
    customers = [str(c) for c in table.column("customer_id").to_pylist()]
    truth = [set(map(str, items)) for items in table.column("product_ids").to_pylist()]
    k = min(EVAL_K, pipe.max_k)
    recs = [[h.product_id for h in hits] for hits in pipe.recommend(customers, k)]
    recall, ndcg = recall_ndcg_at_k(recs, truth, k)
    return {f"recall_at_{k}": recall, f"ndcg_at_{k}": ndcg, "customers": float(len(customers))}
