"""`shopserve optimize MODEL@VERSION --recipe ...`: the command-line face of shopserve.optimize.

Prints the report table, writes JSON and Markdown with ``--report-dir``, and exits with the
quality-gate code (6) when no variant passed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shopserve.errors import UsageError
from shopserve.optimize import (
    OptimizeSettings,
    QualityBudget,
    SpeedSettings,
    optimize,
    recipe_names,
    require_accepted,
)
from shopserve.registry import Registry
from shopserve.runtime.onnx import Device


def optimize_command(
    ref: Annotated[str, typer.Argument(help="The parent version, e.g. ctr@1 or ctr@production.")],
    recipe: Annotated[list[str], typer.Option(
        "--recipe", "-r", help="Recipe to apply; repeat for more variants. 'a+b' chains, "
        "'name:key=value' sets options. Known: " + ", ".join(recipe_names()))] = [],  # noqa: B006
    max_auc_drop: Annotated[float, typer.Option(help="Largest AUC loss allowed.")] = 0.002,
    max_ndcg_drop: Annotated[float, typer.Option(help="Largest NDCG loss allowed.")] = 0.005,
    max_recall_drop: Annotated[float, typer.Option(help="Largest recall loss allowed.")] = 0.01,
    min_topk_agreement: Annotated[float, typer.Option(
        help="Least share of the parent's top-10 results a child must keep.")] = 0.95,
    device: Annotated[Device, typer.Option(help="Where variants are built and timed.")] = (
        Device.CPU),
    calibration: Annotated[Path | None, typer.Option(
        help=".npz with one array per graph input (default: the version's eval.parquet).")] = None,
    report_dir: Annotated[Path | None, typer.Option(help="Write report JSON and Markdown here.")
                          ] = None,
    promote: Annotated[str | None, typer.Option(
        help="Move this alias to the fastest accepted child.")] = None,
    time_per_batch: Annotated[float, typer.Option(
        help="Seconds spent timing each batch size.")] = 0.4,
    home: Annotated[Path | None, typer.Option(
        help="Registry home (default: SHOPSERVE_HOME or ~/.shopserve).")] = None,
) -> None:
    """Export, optimize, quantize with a quality gate: one registered child per recipe."""
    if not recipe:
        raise UsageError(f"give at least one --recipe; known recipes: {', '.join(recipe_names())}")
    if time_per_batch <= 0:
        raise UsageError(f"--time-per-batch must be positive, got {time_per_batch}")
    budget = QualityBudget(max_auc_drop=max_auc_drop, max_ndcg_drop=max_ndcg_drop,
                           max_recall_drop=max_recall_drop,
                           min_topk_agreement=min_topk_agreement)
    settings = OptimizeSettings(device=device, calibration=calibration, report_dir=report_dir,
                                promote=promote,
                                speed=SpeedSettings(seconds_per_batch=time_per_batch))
    report = optimize(Registry.open(home), ref, recipe, budget, settings)
    typer.echo(report.to_table())
    if report_dir is not None:
        typer.echo(f"report written to {report_dir}")
    require_accepted(report)
