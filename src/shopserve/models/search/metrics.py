"""Ranking metrics on graded judgments (relevance 1.0-3.0; unjudged products count as 1.0).

Gain is ``relevance - 1``, so a product judged irrelevant (1.0) earns nothing; recall counts
products judged at least ``RELEVANT_AT``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

RELEVANT_AT = 2.0


def ndcg_at(ranked: Sequence[str], judged: Mapping[str, float], k: int) -> float | None:
    """NDCG@k of one ranking, or ``None`` when no judged product has any gain."""
    ideal = sorted((r - 1.0 for r in judged.values()), reverse=True)[:k]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    idcg = float(np.dot(ideal, discounts[: len(ideal)]))
    if idcg <= 0.0:
        return None
    gains = [judged.get(pid, 1.0) - 1.0 for pid in ranked[:k]]
    return float(np.dot(gains, discounts[: len(gains)])) / idcg


def recall_at(ranked: Sequence[str], judged: Mapping[str, float], k: int) -> float | None:
    """Share of relevant judged products in the top k, or ``None`` when there are none."""
    relevant = {pid for pid, r in judged.items() if r >= RELEVANT_AT}
    if not relevant:
        return None
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def mean_metrics(
    rankings: Sequence[Sequence[str]], judgments: Sequence[Mapping[str, float]], prefix: str = ""
) -> dict[str, float]:
    """``{prefix}ndcg_at_10`` and ``{prefix}recall_at_100`` averaged over the queries they apply
    to (metric names follow shopserve's ``family_at_k`` convention, as recommend and batch do)."""
    ndcg = [ndcg_at(r, j, 10) for r, j in zip(rankings, judgments, strict=True)]
    recall = [recall_at(r, j, 100) for r, j in zip(rankings, judgments, strict=True)]
    nd = [x for x in ndcg if x is not None]
    rc = [x for x in recall if x is not None]
    return {
        f"{prefix}ndcg_at_10": float(np.mean(nd)) if nd else 0.0,
        f"{prefix}recall_at_100": float(np.mean(rc)) if rc else 0.0,
    }


def topk_agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Mean share of each reference top-k row that the candidate row also returns."""
    pairs = zip(reference, candidate, strict=True)
    shared = [len(set(a).intersection(b)) / len(a) for a, b in pairs]
    return float(np.mean(shared))
