"""The optimize report: every variant's size, latency per batch size, throughput, quality and
delta to the parent, as a terminal table, JSON and Markdown.
"""

from __future__ import annotations

import enum
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from shopserve.optimize.gate import QualityBudget


class VariantStatus(enum.StrEnum):
    PARENT = "parent"
    READY = "ready"
    REJECTED = "rejected"


class VariantReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str  # recipe chain, or "fp32" for the parent
    ref: str | None  # registered version (None until registered)
    status: VariantStatus
    reason: str | None = None
    params: dict[str, Any] = {}
    size_bytes: int
    latency_ms: dict[int, float]
    throughput: dict[int, float]  # rows per second
    metrics: dict[str, float]
    deltas: dict[str, float] = {}  # child metric minus parent metric
    topk_agreement: float | None = None

    def registry_metrics(self) -> dict[str, float]:
        """What the registry records about this version besides its quality metrics."""
        out = dict(self.metrics)
        out["size_bytes"] = float(self.size_bytes)
        for size, ms in self.latency_ms.items():
            out[f"latency_ms_b{size}"] = ms
        for size, rps in self.throughput.items():
            out[f"throughput_b{size}"] = rps
        if self.topk_agreement is not None:
            out["topk_agreement"] = self.topk_agreement
        return out


class OptimizeReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    parent: str
    device: str
    budget: QualityBudget
    created_at: datetime
    variants: tuple[VariantReport, ...]  # the parent first
    promoted: str | None = None  # "alias → ref" when an alias was moved

    @property
    def children(self) -> tuple[VariantReport, ...]:
        return tuple(v for v in self.variants if v.status is not VariantStatus.PARENT)

    @property
    def accepted(self) -> tuple[VariantReport, ...]:
        return tuple(v for v in self.variants if v.status is VariantStatus.READY)

    def columns(self) -> list[str]:
        metrics = sorted({m for v in self.variants for m in v.metrics})
        sizes = sorted({s for v in self.variants for s in v.latency_ms})
        return (["variant", "version", "status", "size_kb"] + [f"ms@{s}" for s in sizes]
                + [f"rows/s@{s}" for s in sizes[-1:]] + metrics
                + [f"Δ{m}" for m in metrics] + ["top-k agree"])

    def rows(self) -> list[list[str]]:
        metrics = sorted({m for v in self.variants for m in v.metrics})
        sizes = sorted({s for v in self.variants for s in v.latency_ms})
        out = []
        for v in self.variants:
            row = [v.name, v.ref or "-", v.status.value, f"{v.size_bytes / 1024:.1f}"]
            row += [_num(v.latency_ms.get(s), 3) for s in sizes]
            row += [_num(v.throughput.get(s), 0) for s in sizes[-1:]]
            row += [_num(v.metrics.get(m), 4) for m in metrics]
            row += [_num(v.deltas.get(m), 4, signed=True) for m in metrics]
            row.append(_num(v.topk_agreement, 3))
            out.append(row)
        return out

    def to_table(self) -> str:
        header, rows = self.columns(), self.rows()
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                 for r in [header, *rows]]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines + self._notes())

    def to_markdown(self) -> str:
        header, rows = self.columns(), self.rows()
        lines = [f"# Optimize report for {self.parent}", "",
                 f"Device: {self.device}. Created {self.created_at.isoformat()}. Budget: "
                 f"AUC drop ≤ {self.budget.max_auc_drop:g}, NDCG drop ≤ "
                 f"{self.budget.max_ndcg_drop:g}, recall drop ≤ "
                 f"{self.budget.max_recall_drop:g}, top-k agreement ≥ "
                 f"{self.budget.min_topk_agreement:g}.", "",
                 "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join([*lines, "", *self._notes()]) + "\n"

    def _notes(self) -> list[str]:
        notes = [f"rejected {v.name}: {v.reason}" for v in self.variants if v.reason]
        if self.promoted:
            notes.append(f"promoted: {self.promoted}")
        return notes

    def write(self, directory: Path) -> tuple[Path, Path]:
        """``<name>-<version>.json`` and ``.md`` in ``directory`` (created when missing)."""
        directory.mkdir(parents=True, exist_ok=True)
        stem = "optimize-" + self.parent.replace("@", "-")
        json_path, md_path = directory / f"{stem}.json", directory / f"{stem}.md"
        json_path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        md_path.write_text(self.to_markdown(), encoding="utf-8")
        return json_path, md_path


def _num(value: float | None, digits: int, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
