"""`shopserve batch`: the command-line face of shopserve.batch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from shopserve.errors import UsageError

if TYPE_CHECKING:
    from shopserve.batch import BatchSummary

app = typer.Typer(no_args_is_help=True)

S = TypeVar("S", bound=BaseModel)
Workers = Annotated[int, typer.Option(help="Worker processes, one session each")]
Overwrite = Annotated[bool, typer.Option(help="Replace an existing output")]
Restart = Annotated[bool, typer.Option(help="Drop an unfinished job's parts")]


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
    engine: Annotated[str, typer.Option(help="local (processes) or ray (Ray Data actors)")]
    = "local",
    address: Annotated[str | None, typer.Option(
        envvar="SHOPSERVE_RAY_ADDRESS", help="With --engine ray: auto or ray://HOST:PORT")]
    = None,
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
    if engine == "ray":
        from shopserve.batch.ray_engine import run_predict_on_ray

        _report(run_predict_on_ray(spec, address))
    elif engine == "local":
        _report(run_predict(spec))
    else:
        raise UsageError(f"--engine must be local or ray, got {engine!r}")


@app.command("recommend")
def recommend(
    model: Annotated[str, typer.Option(help="A recommend model: NAME@ALIAS or NAME@N")],
    output: Annotated[Path, typer.Option(help="Output file (.parquet/.csv/.jsonl) or folder")],
    top_k: Annotated[int, typer.Option(help="Items per customer")] = 50,
    customers: Annotated[Path | None, typer.Option(
        help="File or folder of customers (default: every customer the model knows)")] = None,
    customer_column: Annotated[str, typer.Option(help="Column of --customers with the ids")]
    = "customer_id",
    workers: Workers = 1,
    batch_size: Annotated[int, typer.Option(help="Customers per chunk")] = 1024,
    overwrite: Overwrite = False,
    restart: Restart = False,
) -> None:
    """Top-K items for every customer: customer_id, rank, item_id, score."""
    from shopserve.batch import RecommendJobSpec, run_recommend

    spec = _spec(RecommendJobSpec, "batch recommend", model=model, output=output, top_k=top_k,
                 customers=customers, customer_column=customer_column, workers=workers,
                 batch_size=batch_size, overwrite=overwrite, restart=restart)
    _report(run_recommend(spec))


@app.command("embed")
def embed(
    model: Annotated[str, typer.Option(help="A search model: NAME@ALIAS or NAME@N")],
    catalog: Annotated[Path, typer.Option(help="Catalog file or folder (product_id, title)")],
    output: Annotated[Path, typer.Option(help="Vectors file (.parquet/.jsonl) or folder")],
    id_column: Annotated[str, typer.Option(help="Column with the product id")] = "product_id",
    text_column: Annotated[str, typer.Option(help="Column with the text to embed")] = "title",
    title_tokens: Annotated[int, typer.Option(help="Tokens kept per title")] = 48,
    workers: Workers = 1,
    batch_size: Annotated[int, typer.Option(help="Products per chunk")] = 1024,
    overwrite: Overwrite = False,
    restart: Restart = False,
) -> None:
    """Embed CATALOG, build a fresh index, register it as a new version of MODEL."""
    from shopserve.batch import EmbedJobSpec, run_embed

    spec = _spec(EmbedJobSpec, "batch embed", model=model, catalog=catalog, output=output,
                 id_column=id_column, text_column=text_column, title_tokens=title_tokens,
                 workers=workers, batch_size=batch_size, overwrite=overwrite, restart=restart)
    _report(run_embed(spec))


def _spec(kind: type[S], command: str, **values: object) -> S:
    from shopserve.config import describe_validation_error

    try:
        return kind.model_validate(values)
    except ValidationError as exc:
        raise UsageError(describe_validation_error(command, exc)) from exc


def _report(summary: BatchSummary) -> None:
    typer.echo(f"wrote {summary.rows:,} rows to {summary.output} in {summary.seconds:.1f}s "
               f"({summary.chunks} chunks, {summary.resumed_chunks} resumed)")
    rate = summary.scored_rows / summary.scoring_seconds if summary.scoring_seconds else 0.0
    typer.echo(f"time: start-up {summary.startup_seconds:.1f}s, scoring "
               f"{summary.scoring_seconds:.1f}s ({rate:,.0f} rows/s), "
               f"publish {summary.publish_seconds:.1f}s")
    typer.echo(f"bad rows: {summary.bad_rows:,} (see {summary.errors_path})")
    if summary.metrics_path is not None:
        shown = ", ".join(f"{name}={value:.4f}" for name, value in summary.metrics.items())
        typer.echo(f"metrics: {shown} (saved to {summary.metrics_path})")
    if summary.registered is not None:
        shown = ", ".join(f"{name}={value:.4f}" for name, value in summary.metrics.items())
        typer.echo(f"registered {summary.registered} ({shown})")
