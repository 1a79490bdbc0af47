"""`shopserve tune MODEL@ALIAS ...` and `shopserve tune cache ...`: the command-line face of
shopserve.tune (capacity planning from measurements).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from shopserve.errors import SpecError, UsageError


class _ModelByDefault(TyperGroup):
    """``tune ctr@production ...`` runs the ``model`` command; ``tune cache ...`` the cache one."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # click's or typer's Context
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["model", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_ModelByDefault, no_args_is_help=True)
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_seconds(text: str, what: str) -> float:
    """``90``, ``20s``, ``5m`` or ``1h`` as seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise UsageError(f"{what} must be a positive duration like 90, 20s, 5m or 1h; got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_sizes(text: str) -> tuple[int, ...]:
    """``100,1k,10k,1m`` as entry counts."""
    sizes = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*([kKmM]?)\s*", part)
        if not match or int(match.group(1)) < 1:
            raise UsageError(f"--sizes must be whole numbers of entries like 1000,10k,1m; "
                             f"got {part.strip()!r}")
        sizes.append(int(match.group(1)) * {"": 1, "k": 1000, "m": 1_000_000}[
            match.group(2).lower()])
    return tuple(sizes)


def _check(model: type[Any], source: str, **values: Any) -> Any:
    from pydantic import ValidationError

    from shopserve.config import describe_validation_error

    try:
        return model(**values)
    except ValidationError as exc:
        raise SpecError(describe_validation_error(source, exc)) from exc


@app.command("model", help="Measure a model through the real serving path and plan capacity "
             "(the default: `shopserve tune ctr@production --target-rps ... --p99-ms ...`).")
def tune_model(
    ref: Annotated[str, typer.Argument(help="Model to tune, e.g. ctr@production.")],
    target_rps: Annotated[float, typer.Option(help="Requests/s the fleet must serve.")],
    p99_ms: Annotated[float, typer.Option(help="p99 latency goal in milliseconds.")],
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    budget: Annotated[str, typer.Option(help="Time for the whole search: 90, 20s, 5m, 1h.")
                      ] = "5m",
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Where deployment.yaml, tune.md and tune.json go "
        "(default ./tune-<model>).")] = None,
    headroom: Annotated[float, typer.Option(
        help="Share of each machine's measured capacity kept free at the target.")] = 0.25,
    rows_per_request: Annotated[int, typer.Option(help="Rows per /v1/rank request.")] = 10,
    step_seconds: Annotated[float, typer.Option(help="Seconds of load per measurement step.")
                            ] = 1.5,
    max_configs: Annotated[int | None, typer.Option(help="Stop after this many configurations.")
                           ] = None,
    home: Annotated[Path | None, typer.Option(envvar="SHOPSERVE_HOME", help="Registry home.")
                    ] = None,
) -> None:
    """Find the cheapest serving settings that meet the target; write a deployment file."""
    from shopserve.tune import MeasureSettings, TuneSpec, save_result, tune, write_outputs

    if device not in ("cpu", "cuda"):
        raise UsageError(f"--device must be cpu or cuda, got {device!r}")
    measure = _check(MeasureSettings, "tune options", target_rps=target_rps, p99_ms=p99_ms,
                     headroom=headroom, device=device, step_s=step_seconds,
                     rows_per_request=rows_per_request, home=home)
    spec = _check(TuneSpec, "tune options", ref=ref, measure=measure,
                  budget_s=parse_seconds(budget, "--budget"), max_configs=max_configs)
    result = tune(spec, echo=typer.echo)
    stored = save_result(result, home)
    written = write_outputs(result, out or Path(f"tune-{result.model}"), home)
    p = result.plan
    typer.echo(f"\nchosen: {p.trial.candidate.label()}: {p.machines} machine(s) × "
               f"{p.replicas_per_machine} replica(s), {p.headroom_at_target:.0%} headroom at "
               f"{result.target.rps:g} req/s")
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo(f"recorded {stored} (used by `replicas: auto`)")


@app.command("cache", help="Simulate the answer cache over a request log: hit ratio per size "
             "and TTL, memory, and the size that reaches a goal.")
def tune_cache(
    log: Annotated[Path | None, typer.Option(
        help="Request log (.parquet, .csv, .jsonl); without it a demo-shop log is made.")] = None,
    key_column: Annotated[str, typer.Option(help="Column with the cache key (query).")
                          ] = "query",
    time_column: Annotated[str, typer.Option(help="Column with the request time.")
                           ] = "timestamp",
    sizes: Annotated[str, typer.Option(help="Entries per replica, e.g. 100,1k,10k,100k.")
                     ] = "100,1k,10k,100k",
    ttls: Annotated[str, typer.Option(help="TTLs, e.g. 30s,60,5m.")] = "60",
    hit_goal: Annotated[float, typer.Option(help="Hit ratio to reach, 0-1.")] = 0.8,
    answer_items: Annotated[int, typer.Option(help="Hits per cached answer (for memory).")
                            ] = 10,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write cache.md and cache.json "
                                             "(and the demo log) here.")] = None,
    demo_requests: Annotated[int, typer.Option(help="Demo log: requests.")] = 200_000,
    demo_rate: Annotated[float, typer.Option(help="Demo log: requests/s.")] = 200.0,
    seed: Annotated[int, typer.Option(help="Demo log: seed.")] = 0,
) -> None:
    """One streaming pass over the log; prints the table and the recommended size."""
    import pyarrow.parquet as pq

    from shopserve.tune import CachePlanSpec, iter_requests, simulate, write_plan
    from shopserve.tune.requestlog import demo_log

    ttl_values = tuple(parse_seconds(t, "--ttls") for t in ttls.split(","))
    spec = _check(CachePlanSpec, "cache options", sizes=parse_sizes(sizes), ttls_s=ttl_values,
                  hit_goal=hit_goal, answer_items=answer_items)
    with tempfile.TemporaryDirectory(prefix="shopserve-cache-") as tmp:
        if log is None:
            log = (out or Path(tmp)) / "queries.parquet"
            log.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(demo_log(demo_requests, demo_rate, seed), log)
            typer.echo(f"demo-shop request log: {demo_requests:,} Zipf-skewed queries at "
                       f"{demo_rate:g}/s → {log}")
            key_column, time_column = "query", "timestamp"
        plan = simulate(iter_requests(log, key_column, time_column), spec, echo=typer.echo)
    typer.echo(plan.to_markdown())
    if out is not None:
        for path in write_plan(plan, out):
            typer.echo(f"wrote {path}")
