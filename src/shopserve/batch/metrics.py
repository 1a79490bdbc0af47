"""Quality metrics of a scored batch with labels: AUC, log loss, accuracy, P/R@K, NDCG@K.

Ranking metrics are per group (customer, query) when a group column is given, else over the
whole scored set; binary metrics need 0/1 labels.
"""

from __future__ import annotations

import numpy as np

from shopserve.errors import InputError
from shopserve.models.metrics import log_loss, roc_auc


def _ranking(labels: np.ndarray, scores: np.ndarray, k: int) -> tuple[float, float, float]:
    order = np.argsort(-scores, kind="stable")[:k]
    gains = labels[order]
    relevant = labels > 0
    hits = float((gains > 0).sum())
    precision = hits / max(len(order), 1)
    recall = hits / relevant.sum() if relevant.any() else float("nan")
    discounts = 1.0 / np.log2(np.arange(2, len(order) + 2))
    ideal = np.sort(labels)[::-1][: len(order)]
    ideal_dcg = float(((2.0**ideal - 1) * discounts).sum())
    dcg = float(((2.0**gains - 1) * discounts).sum())
    ndcg = dcg / ideal_dcg if ideal_dcg > 0 else float("nan")
    return precision, recall, ndcg


def batch_metrics(labels: np.ndarray, scores: np.ndarray, k: int,
                  groups: np.ndarray | None = None) -> dict[str, float]:
    """Metrics of ``scores`` (one per row) against ``labels``; NaN-free, JSON-ready."""
    if len(labels) == 0:
        raise InputError("no labelled rows were scored, so there is nothing to measure")
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(scores, dtype=np.float64)
    out: dict[str, float] = {"rows": float(len(y))}
    binary = bool(np.isin(y, (0.0, 1.0)).all())
    if binary:
        if 0 < y.sum() < len(y):
            out["auc"] = roc_auc(y, p)
        probabilities = bool(((p >= 0) & (p <= 1)).all())
        if probabilities:
            out["logloss"] = log_loss(y, p)
        threshold = 0.5 if probabilities else 0.0
        out["accuracy"] = float(((p >= threshold) == (y == 1)).mean())
    per_group = [(y, p)] if groups is None else [
        (y[groups == g], p[groups == g]) for g in np.unique(groups)]
    triples = np.array([_ranking(gy, gp, k) for gy, gp in per_group], dtype=np.float64)
    for col, name in enumerate(("precision", "recall", "ndcg")):
        values = triples[:, col][~np.isnan(triples[:, col])]
        if len(values):
            out[f"{name}_at_{k}"] = float(values.mean())
    return out
