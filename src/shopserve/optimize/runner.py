"""``optimize(registry, ref, recipes, budget)``: build every variant of a version's main graph,
measure each on the parent's held-out rows, gate it, then register children and report.

Nothing is registered until every variant was built and measured, so a recipe that does not
apply or bad calibration data leaves the registry as it was.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from shopserve.errors import QualityGateError, UsageError
from shopserve.optimize.calibration import Batch, concat_batches, load_calibration
from shopserve.optimize.gate import Quality, QualityBudget, judge
from shopserve.optimize.graphs import load_graph
from shopserve.optimize.probes import PipelineProbe, QualityProbe
from shopserve.optimize.recipes import RecipeContext, Variant, parse_variants
from shopserve.optimize.report import OptimizeReport, VariantReport, VariantStatus
from shopserve.optimize.speed import SpeedSettings, measure_speed
from shopserve.registry import LoadedVersion, Registry
from shopserve.runtime.onnx import Device, OnnxModel, SessionSettings
from shopserve.types import Optimization, VersionStatus


class OptimizeSettings(BaseModel):
    """Where and how variants are built and measured."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device: Device = Device.CPU
    calibration: Path | None = None  # .npz of graph inputs; default: eval.parquet featurized
    report_dir: Path | None = None
    promote: str | None = None  # alias moved to the fastest accepted child
    speed: SpeedSettings = SpeedSettings()


@dataclass
class _Built:
    variant: Variant
    graph: Path
    report: VariantReport


def _measure(name: str, graph: Path, quality: Quality, rows: Batch,
             settings: OptimizeSettings) -> VariantReport:
    speed = measure_speed(graph, rows, SessionSettings(device=settings.device), settings.speed)
    return VariantReport(name=name, ref=None, status=VariantStatus.PARENT,
                         size_bytes=graph.stat().st_size, latency_ms=speed.latency_ms,
                         throughput=speed.throughput, metrics=quality.metrics)


def _build(variant: Variant, source: Path, ctx: RecipeContext) -> Path:
    graph = source
    for recipe in variant.recipes:
        recipe.check(load_graph(graph), ctx)
        graph = recipe.apply(graph, ctx)
    return graph


class OptimizeRun:
    """One optimize run over one parent version (see ``optimize``)."""

    def __init__(self, registry: Registry, loaded: LoadedVersion, budget: QualityBudget,
                 settings: OptimizeSettings, probe: QualityProbe, inputs: Sequence[Batch]) -> None:
        self.registry, self.loaded, self.budget = registry, loaded, budget
        self.settings, self.probe, self.inputs = settings, probe, inputs
        self.graph_name = str(loaded.meta.config["graph"])
        self.rows = concat_batches(inputs)

    def context(self, work: Path, parent: Quality) -> RecipeContext:
        def within_budget(graph: Path) -> str | None:
            return judge(parent, self.probe.measure(graph), self.budget).reason

        return RecipeContext(work_dir=work, calibration=lambda: self.inputs,
                             device=self.settings.device, within_budget=within_budget)

    def build_all(self, variants: Sequence[Variant], work: Path) -> list[_Built]:
        source = Path(self.loaded.files[self.graph_name])
        parent_q = self.probe.measure(source)
        parent = _measure("fp32", source, parent_q, self.rows, self.settings)
        parent = parent.model_copy(update={"ref": self.loaded.meta.ref})
        built = [_Built(Variant(()), source, parent)]
        for i, variant in enumerate(variants):
            ctx = self.context(work / f"{i:02d}-{variant.name}", parent_q)
            variant.recipes[0].check(load_graph(source), ctx)
        for i, variant in enumerate(variants):
            graph = _build(variant, source, self.context(work / f"{i:02d}-{variant.name}",
                                                          parent_q))
            quality = self.probe.measure(graph)
            verdict = judge(parent_q, quality, self.budget)
            report = _measure(variant.name, graph, quality, self.rows, self.settings)
            deltas = {m: v - parent_q.metrics[m] for m, v in quality.metrics.items()
                      if m in parent_q.metrics}
            status = VariantStatus.READY if verdict.accepted else VariantStatus.REJECTED
            built.append(_Built(variant, graph, report.model_copy(update={
                "status": status, "reason": verdict.reason, "params": variant.describe(),
                "deltas": deltas, "topk_agreement": verdict.agreement})))
        return built

    def register(self, item: _Built) -> VariantReport:
        meta, report = self.loaded.meta, item.report
        files = {**self.loaded.files, self.graph_name: item.graph}
        rejected = report.status is VariantStatus.REJECTED
        child = self.registry.register(
            meta.name, files, meta.kind, signature=OnnxModel(item.graph).signature,
            config=meta.config, metrics=report.registry_metrics(), data_hash=meta.data_hash,
            parent=meta.ref, optimization=Optimization(recipe=item.variant.name,
                                                       params=item.variant.describe()),
            status=VersionStatus.REJECTED if rejected else VersionStatus.READY,
            reason=report.reason,
        )
        return report.model_copy(update={"ref": child.ref})

    def promote(self, reports: Sequence[VariantReport]) -> str | None:
        alias = self.settings.promote
        accepted = [r for r in reports if r.status is VariantStatus.READY]
        if alias is None or not accepted:
            return None
        biggest = max(self.settings.speed.batch_sizes)
        best = max(accepted, key=lambda r: r.throughput[biggest])
        assert best.ref is not None
        self.registry.promote(best.ref, alias)
        return f"{alias} → {best.ref}"


def optimize(registry: Registry, ref: str, recipes: Sequence[str | Variant],
             budget: QualityBudget | None = None, settings: OptimizeSettings | None = None,
             probe: QualityProbe | None = None) -> OptimizeReport:
    """Make, gate and register one child of ``ref`` per recipe (``a+b`` chains recipes)."""
    budget, settings = budget or QualityBudget(), settings or OptimizeSettings()
    variants = [v if isinstance(v, Variant) else parse_variants([v])[0] for v in recipes]
    if not variants:
        parse_variants([])  # raises the error that lists the known recipes
    loaded = registry.load(ref)
    graph = loaded.meta.config.get("graph")
    if not isinstance(graph, str) or graph not in loaded.files:
        raise UsageError(f"{loaded.meta.ref}: config['graph'] must name its main ONNX artifact, "
                         f"got {graph!r} (artifacts: {sorted(loaded.files)})")
    session = SessionSettings(device=settings.device)
    probe = probe or PipelineProbe(loaded.meta.kind, loaded.meta.config, loaded.files, session)
    inputs = (load_calibration(settings.calibration, OnnxModel(loaded.files[graph]).signature)
              if settings.calibration else probe.inputs())
    run = OptimizeRun(registry, loaded, budget, settings, probe, inputs)
    with tempfile.TemporaryDirectory(prefix="shopserve-optimize-") as work:
        built = run.build_all(variants, Path(work))
        reports = [built[0].report] + [run.register(b) for b in built[1:]]
    report = OptimizeReport(parent=loaded.meta.ref, device=settings.device.value, budget=budget,
                            created_at=datetime.now(UTC), variants=tuple(reports),
                            promoted=run.promote(reports))
    if settings.report_dir is not None:
        report.write(settings.report_dir)
    return report


def require_accepted(report: OptimizeReport) -> None:
    """``QualityGateError`` listing every reason when no child passed its gate."""
    if report.children and not report.accepted:
        reasons = "; ".join(f"{v.name} ({v.ref}): {v.reason}" for v in report.children)
        raise QualityGateError(f"no variant of {report.parent} passed the quality gate: {reasons}")
