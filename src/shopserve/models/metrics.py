"""Quality metrics of the reference models: AUC and log loss for ranking, recall and NDCG for lists.

Written in numpy so that evaluation needs nothing beyond the serving dependencies.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shopserve.errors import InputError


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    # Tied scores share the mean of their ranks, as in the Mann-Whitney U statistic.
    boundaries = np.flatnonzero(np.diff(sorted_vals)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(values)]])
    mean_rank = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve; ties count one half."""
    y = np.asarray(labels).astype(bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise InputError("AUC needs both positive and negative labels in the evaluation rows")
    ranks = _average_ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities ``probs`` against 0/1 ``labels``."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p)))


def recall_ndcg_at_k(
    recommended: Sequence[Sequence[str]], relevant: Sequence[set[str]], k: int
) -> tuple[float, float]:
    """Mean recall@k (hits / relevant items) and NDCG@k (binary gains) over users."""
    if len(recommended) != len(relevant):
        raise InputError(f"{len(recommended)} recommendation lists for {len(relevant)} users")
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    recalls: list[float] = []
    ndcgs: list[float] = []
    for recs, truth in zip(recommended, relevant, strict=True):
        if not truth:
            continue
        hits = np.array([item in truth for item in list(recs)[:k]], dtype=np.float64)
        recalls.append(float(hits.sum()) / len(truth))
        ideal = float(discounts[: min(k, len(truth))].sum())
        ndcgs.append(float((hits * discounts[: len(hits)]).sum()) / ideal)
    if not recalls:
        raise InputError("no user with held-out items to evaluate")
    return float(np.mean(recalls)), float(np.mean(ndcgs))
