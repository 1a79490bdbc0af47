"""`shopserve drill`: the command-line face of shopserve.drill (plan, list, run, report)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shopserve.errors import ShopserveError, UsageError

app = typer.Typer(no_args_is_help=True)


@app.command("list")
def list_drills() -> None:
    """The built-in catalogue of drills."""
    from shopserve.drill.catalogue import catalogue

    for entry in catalogue():
        faults = ", ".join(f.type.value for f in entry.drill.shopserve.faults) or "no fault"
        typer.echo(f"{entry.name:<22} {faults:<20} {entry.drill.title}")


NOT_STARTED = 2  # exit code when the drill did not start: nothing was touched


def _not_started(exc: ShopserveError) -> typer.Exit:
    typer.echo(f"error: {exc}\nthe drill did not start; nothing was changed", err=True)
    return typer.Exit(NOT_STARTED)


@app.command("plan")
def plan(
    drill: Annotated[str, typer.Argument(help="Drill file, or a catalogue name.")],
    target: Annotated[str, typer.Option(help="Service URL shown in the plan.")] = "(the target)",
) -> None:
    """Dry run: what the drill will do, to what, for how long, and how it is undone."""
    from shopserve.drill.catalogue import resolve
    from shopserve.drill.plan import plan_lines
    from shopserve.drill.spec import load_drill

    try:
        spec = load_drill(resolve(drill))
    except ShopserveError as exc:
        raise _not_started(exc) from exc
    typer.echo("\n".join(plan_lines(spec, target)))


@app.command("run")
def run(
    drill: Annotated[str, typer.Argument(help="Drill file, or a catalogue name.")],
    target: Annotated[str | None, typer.Option(help="URL of a running service.")] = None,
    deployment: Annotated[Path | None, typer.Option(
        help="Deployment file: the drill starts it, and stops it after.")] = None,
    admin_token: Annotated[str | None, typer.Option(envvar="SHOPSERVE_ADMIN_TOKEN")] = None,
    home: Annotated[Path | None, typer.Option(envvar="SHOPSERVE_HOME",
                                              help="Registry home of the target.")] = None,
    journal: Annotated[Path | None, typer.Option(
        help="Where to write the journal (default: the home's drills/ folder, which the "
        "dashboard reads).")] = None,
    report: Annotated[Path | None, typer.Option(help="Also write the HTML report here.")] = None,
) -> int:
    """Run a drill. Exit 0 passed, 2 did not start (nothing touched), 3 deviated (also aborted
    or interrupted), 4 a fault undo or rollback failed (check the service)."""
    from shopserve.drill.catalogue import resolve
    from shopserve.drill.deployment import OwnedDeployment
    from shopserve.drill.journal import write_journal
    from shopserve.drill.results import Verdict
    from shopserve.drill.runner import DrillRunner
    from shopserve.drill.spec import load_drill
    from shopserve.drill.target import DrillTarget

    owned = runner = None
    try:
        if (target is None) == (deployment is None):
            raise UsageError("give exactly one of --target URL or --deployment FILE")
        spec = load_drill(resolve(drill))
        if deployment is not None:
            from shopserve.serve.spec import load_deployment

            data = load_deployment(deployment).model_dump(mode="json", exclude_none=True)
            owned = OwnedDeployment(data)
            where = owned.start()
        else:
            assert target is not None
            where = DrillTarget(url=target, admin_token=admin_token, home=home)
        runner = DrillRunner(spec, where)
        result = runner.run()
    except ShopserveError as exc:
        if runner is None or not runner.started:
            raise _not_started(exc) from exc
        typer.echo(f"error: {exc}\nthe drill stopped after it started; check the service",
                   err=True)
        raise typer.Exit(int(Verdict.ROLLBACK_FAILED)) from exc
    finally:
        if owned is not None:
            owned.stop()
    if journal is None:
        journal = default_journal(home, drill)
    write_journal(result, journal)
    ext = result["extensions"][0]
    if report is not None:
        from shopserve.drill.report import write_report

        write_report(result, report)
    for check in ext["checks"]:
        typer.echo(f"{'PASS' if check['ok'] else 'FAIL'}  {check['name']}: {check['observed']} "
                   f"(expected {check['expected']})")
    typer.echo(f"verdict: {ext['verdict']} (journal {journal})")
    return int(ext["exit_code"])


def default_journal(home: Path | None, drill: str) -> Path:
    """``<home>/drills/<drill>-<UTC time>.json``: where the dashboard finds the latest drills."""
    from datetime import UTC, datetime

    from shopserve.config import home_settings

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = home_settings(home=home).home_dir / "drills"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{Path(drill).stem}-{stamp}.json"


@app.command("report")
def report(
    journal: Annotated[Path, typer.Argument(help="Journal JSON written by `drill run`.")],
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
) -> None:
    """Render a journal as one self-contained HTML page."""
    from shopserve.drill.journal import read_journal
    from shopserve.drill.report import write_report

    out = output or journal.with_suffix(".html")
    write_report(read_journal(journal), out)
    typer.echo(f"report written to {out}")
