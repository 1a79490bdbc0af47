"""Purchase history as implicit feedback: a time split, the customer × item counts, and the truth.

Only purchases with a customer id count; the weight of a pair is its number of distinct invoices.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shopserve.errors import InputError

NEEDED = ("invoice", "product_id", "timestamp", "customer_id")


@dataclass(frozen=True)
class Interactions:
    """Customer × item pairs with weights; ids are positions in ``customers`` and ``items``."""

    customers: list[str]
    items: list[str]
    user: np.ndarray  # int64 [nnz]
    item: np.ndarray  # int64 [nnz]
    weight: np.ndarray  # float32 [nnz], distinct invoices

    def dense(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Binary customer × item matrix (float32), for the given customer positions."""
        rows = np.arange(len(self.customers)) if rows is None else rows
        where = {int(u): i for i, u in enumerate(rows)}
        out = np.zeros((len(rows), len(self.items)), dtype=np.float32)
        for u, i in zip(self.user, self.item, strict=True):
            r = where.get(int(u))
            if r is not None:
                out[r, i] = 1.0
        return out


def check_purchases(purchases: pa.Table) -> pa.Table:
    """The purchases with a customer id, or an ``InputError`` naming a missing column."""
    for name in NEEDED:
        if name not in purchases.schema.names:
            raise InputError(f"purchases: missing column {name!r}; have {purchases.schema.names}")
    known = purchases.filter(pc.is_valid(purchases.column("customer_id")))
    if known.num_rows == 0:
        raise InputError("purchases: no row has a customer_id, nothing to learn from")
    return known


def split_by_time(purchases: pa.Table, test_weeks: int) -> tuple[pa.Table, pa.Table, dt.datetime]:
    """Rows before the last ``test_weeks`` weeks, rows within them, and the cut-off time."""
    last = pc.max(purchases.column("timestamp")).as_py()
    cutoff = last - dt.timedelta(weeks=test_weeks)
    before = pc.less(purchases.column("timestamp"), pa.scalar(cutoff, purchases["timestamp"].type))
    train, test = purchases.filter(before), purchases.filter(pc.invert(before))
    if train.num_rows == 0 or test.num_rows == 0:
        raise InputError(f"purchases span too short for a {test_weeks}-week test window "
                         f"(last purchase {last})")
    return train, test, cutoff


def build_interactions(train: pa.Table) -> Interactions:
    grouped = train.group_by(["customer_id", "product_id"]).aggregate(
        [("invoice", "count_distinct")]
    )
    customers = sorted(set(grouped.column("customer_id").to_pylist()))
    items = sorted(set(grouped.column("product_id").to_pylist()))
    cpos = {c: i for i, c in enumerate(customers)}
    ipos = {p: i for i, p in enumerate(items)}
    user = np.array([cpos[c] for c in grouped.column("customer_id").to_pylist()], np.int64)
    item = np.array([ipos[p] for p in grouped.column("product_id").to_pylist()], np.int64)
    weight = np.asarray(grouped.column("invoice_count_distinct"), dtype=np.float32)
    return Interactions(customers, items, user, item, weight)


def held_out(test: pa.Table, seen: Interactions) -> tuple[list[str], list[set[str]]]:
    """Known customers with test purchases, and the known items each bought in the window."""
    known_c, known_i = set(seen.customers), set(seen.items)
    truth: dict[str, set[str]] = {}
    for c, p in zip(test.column("customer_id").to_pylist(),
                    test.column("product_id").to_pylist(), strict=True):
        if c in known_c and p in known_i:
            truth.setdefault(c, set()).add(p)
    customers = sorted(truth)
    return customers, [truth[c] for c in customers]


def popularity(inter: Interactions) -> np.ndarray:
    """Distinct customers per item (float64)."""
    return np.bincount(inter.item, minlength=len(inter.items)).astype(np.float64)


def cooccurrence_scores(inter: Interactions, rows: np.ndarray) -> np.ndarray:
    """Item-to-item baseline: each customer's items summed through cosine item similarity."""
    full = inter.dense()
    norms = np.sqrt(full.sum(axis=0)) + 1e-9
    sim = (full.T @ full) / norms[:, None] / norms[None, :]
    scores: np.ndarray = inter.dense(rows) @ sim
    return scores
