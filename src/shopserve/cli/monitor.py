"""`shopserve monitor`: the command-line face of shopserve.monitor."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from shopserve.errors import NotFoundError, UnavailableError, UsageError

app = typer.Typer(no_args_is_help=True)
DEFAULT_URL = "http://127.0.0.1:8000"


def fetch_status(url: str, range_: str = "5m") -> dict[str, Any]:
    import httpx

    try:
        r = httpx.get(f"{url.rstrip('/')}/dashboard/status.json", params={"range": range_},
                      timeout=10)
    except httpx.HTTPError as exc:
        raise UnavailableError(f"{url} did not answer: {exc}") from exc
    if r.status_code != 200:
        raise UnavailableError(f"{url}/dashboard/status.json answered {r.status_code}")
    data: dict[str, Any] = r.json()
    return data


@app.command("status")
def status(
    url: Annotated[str, typer.Option(envvar="SHOPSERVE_URL", help="The service.")] = DEFAULT_URL,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option(min=0.5, help="Seconds between refreshes.")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="The status document.")] = False,
) -> int:
    """Requests/s, errors, latency, replicas by zone, versions, drift, feedback and drills."""
    from shopserve.monitor.table import status_text

    while True:
        data = fetch_status(url)
        text = json.dumps(data, indent=2) if as_json else status_text(data)
        if watch:
            typer.echo("\x1b[2J\x1b[H" + time.strftime("%H:%M:%S ") + url)
        typer.echo(text)
        if not watch:
            return 0
        time.sleep(interval)


@app.command("drift")
def drift(
    model: Annotated[str, typer.Option(help="Model name (or ref such as ctr@2).")],
    url: Annotated[str | None, typer.Option(help="Live traffic of this service.")] = None,
    input: Annotated[Path | None, typer.Option(
        "--input", help="A batch of model inputs (Parquet) instead.")] = None,
    home: Annotated[Path | None, typer.Option(envvar="SHOPSERVE_HOME",
                                              help="Registry home (for --input).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON report.")] = False,
) -> int:
    """PSI and a two-sample test per input and for the score, against the evaluation data."""
    from shopserve.monitor.table import drift_table

    if (url is None) == (input is None):
        raise UsageError("give exactly one of --url URL or --input FILE")
    if url is not None:
        name = model.split("@")[0]
        reports = [d for d in fetch_status(url)["drift"] if d["model"] == name]
        if not reports:
            raise NotFoundError(f"{url} serves no model {name!r}")
    else:
        assert input is not None
        reports = [batch_drift(model, input, home)]
    if as_json:
        typer.echo(json.dumps({"model": model, "source": url or str(input),
                               "alert": any(d["alert"] for d in reports),
                               "reports": reports}, indent=2))
    else:
        typer.echo(drift_table(reports))
    return 0


def batch_drift(ref: str, path: Path, home: Path | None) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from shopserve.models import load_pipeline
    from shopserve.monitor.drift import compare
    from shopserve.monitor.profiles import batch_table, reference_profile
    from shopserve.monitor.settings import monitor_settings
    from shopserve.registry import Registry

    registry = Registry.open(home)
    reference = reference_profile(registry, ref)
    loaded = registry.load(ref)
    pipe = load_pipeline(loaded.meta.kind, loaded.meta.config, loaded.files)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise UsageError(f"{path}: not a readable Parquet file: {exc}") from exc
    values = batch_table(loaded.meta.kind, loaded.meta.config, pipe, table,
                         limit=max(table.num_rows, 1))
    report = compare(reference, values, monitor_settings()).to_json()
    return {**report, "reference": "eval.parquet"}
