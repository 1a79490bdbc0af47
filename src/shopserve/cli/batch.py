"""`shopserve batch`: the command-line face of shopserve.batch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from shopserve.errors import UsageError

app = typer.Typer(no_args_is_help=True)


@app.command("predict")
def predict(
    model: Annotated[str, typer.Option(help="NAME@ALIAS (or NAME@N) from the registry, "
                                            "or a plain .onnx file")],
    input: Annotated[Path, typer.Option(help="Parquet/CSV/JSONL file or folder of parts")],
    output: Annotated[Path, typer.Option(help="Output file (.parquet/.csv/.jsonl) or folder")],
    workers: Annotated[int, typer.Option(help="Worker processes, one session each")] = 1,
    batch_size: Annotated[int, typer.Option(help="Rows per chunk")] = 4096,
    id_column: Annotated[str | None, typer.Option(help="Column that identifies a row")] = None,
    label_column: Annotated[str | None, typer.Option(help="Labels: compute metrics")] = None,
    group_column: Annotated[str | None, typer.Option(help="Groups for @K metrics")] = None,
    k: Annotated[int, typer.Option(help="K of precision/recall/NDCG@K")] = 10,
    register_metrics: Annotated[bool, typer.Option(help="Store metrics on the version")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output")] = False,
    restart: Annotated[bool, typer.Option(help="Drop an unfinished job's parts")] = False,
) -> None:
    """Score every row of INPUT with MODEL; resumable after a crash by rerunning."""
    from shopserve.batch import PredictJobSpec, run_predict
    from shopserve.config import describe_validation_error

    try:
        spec = PredictJobSpec(model=model, input=input, output=output, workers=workers,
                              batch_size=batch_size, id_column=id_column,
                              label_column=label_column, group_column=group_column, k=k,
                              register_metrics=register_metrics, overwrite=overwrite,
                              restart=restart)
    except ValidationError as exc:
        raise UsageError(describe_validation_error("batch predict", exc)) from exc
    summary = run_predict(spec)
    typer.echo(f"wrote {summary.rows:,} rows to {summary.output} in {summary.seconds:.1f}s "
               f"({summary.chunks} chunks, {summary.resumed_chunks} resumed)")
    typer.echo(f"bad rows: {summary.bad_rows:,} (see {summary.errors_path})")
    if summary.metrics_path is not None:
        shown = ", ".join(f"{name}={value:.4f}" for name, value in summary.metrics.items())
        typer.echo(f"metrics: {shown} (saved to {summary.metrics_path})")
