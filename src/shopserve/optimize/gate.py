"""The quality gate: a child is measured on the same held-out rows as its parent and rejected,
with the reason, when it loses more than the budget allows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

GATED_FAMILIES = frozenset({"auc", "ndcg", "recall"})


def metric_family(metric: str) -> str | None:
    """``auc``, ``ndcg`` or ``recall`` for a metric named in shopserve's convention
    (``[part_]family[_at_k]``: ``auc``, ``ndcg_at_10``, ``encoder_recall_at_100``), else None."""
    for part in metric.split("_"):
        if part in GATED_FAMILIES:
            return part
    return None


class QualityBudget(BaseModel):
    """Largest drops a child may show against its parent (all metrics higher-is-better)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_auc_drop: float = Field(default=0.002, ge=0)  # metrics of the auc family
    max_ndcg_drop: float = Field(default=0.005, ge=0)  # ndcg_at_k, encoder_ndcg_at_k, ...
    max_recall_drop: float = Field(default=0.01, ge=0)  # recall_at_k, ...
    min_topk_agreement: float = Field(default=0.95, ge=0, le=1)
    max_drops: dict[str, float] = Field(default_factory=dict)  # any other metric by exact name

    def limit_for(self, metric: str) -> float | None:
        if metric in self.max_drops:
            return self.max_drops[metric]
        family = metric_family(metric)
        return {"auc": self.max_auc_drop, "ndcg": self.max_ndcg_drop,
                "recall": self.max_recall_drop}.get(family or "")


@dataclass(frozen=True)
class Quality:
    """What one graph scored on the held-out rows, and its top-k result lists (when ranked)."""

    metrics: dict[str, float]
    topk: Sequence[Sequence[str]] | None = None


@dataclass(frozen=True)
class Verdict:
    agreement: float | None
    reasons: tuple[str, ...]

    @property
    def accepted(self) -> bool:
        return not self.reasons

    @property
    def reason(self) -> str | None:
        return "; ".join(self.reasons) if self.reasons else None


def topk_agreement(parent: Sequence[Sequence[str]], child: Sequence[Sequence[str]]) -> float:
    """Mean share of each parent top-k list that the child's list also holds."""
    if len(parent) != len(child):
        raise ValueError(f"{len(parent)} parent lists vs {len(child)} child lists")
    shares = [len(set(p) & set(c)) / len(p) for p, c in zip(parent, child, strict=True) if p]
    return sum(shares) / len(shares) if shares else 1.0


def judge(parent: Quality, child: Quality, budget: QualityBudget) -> Verdict:
    """Accept or reject ``child``; each reason names the metric, the drop and the limit."""
    reasons: list[str] = []
    for name, before in sorted(parent.metrics.items()):
        limit = budget.limit_for(name)
        if limit is None:
            continue
        after = child.metrics.get(name)
        if after is None or not math.isfinite(after):
            reasons.append(f"{name} could not be measured on the child")
            continue
        drop = before - after
        if drop > limit:
            reasons.append(f"{name} dropped {drop:.4f} ({before:.4f} → {after:.4f}), "
                           f"budget {limit:g}")
    agreement = None
    if parent.topk is not None and child.topk is not None:
        agreement = topk_agreement(parent.topk, child.topk)
        if agreement < budget.min_topk_agreement:
            reasons.append(f"top-k agreement with the parent {agreement:.3f} is below "
                           f"{budget.min_topk_agreement:g}")
    return Verdict(agreement=agreement, reasons=tuple(reasons))
