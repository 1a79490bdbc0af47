"""`shopserve doctor`: check this machine before a deployment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from shopserve.config import home_settings
from shopserve.doctor import CheckStatus, DoctorSpec, run_checks

MARK = {CheckStatus.OK: "ok  ", CheckStatus.WARN: "warn", CheckStatus.FAIL: "FAIL"}


def doctor(
    port: Annotated[list[int] | None, typer.Option(help="A port the deployment needs.")] = None,
    host: Annotated[str, typer.Option(help="Address the service will bind.")] = "127.0.0.1",
    redis_url: Annotated[str | None, typer.Option(
        help="Redis to check (else SHOPSERVE_REDIS_URL).")] = None,
    home: Annotated[Path | None, typer.Option(help="Registry home (else SHOPSERVE_HOME).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check this machine before a deployment; exit 1 when a check fails."""
    settings = home_settings(home=home, redis_url=redis_url)
    results = run_checks(DoctorSpec(settings=settings, ports=tuple(port or [8000]), host=host))
    if as_json:
        typer.echo(json.dumps([{"check": r.name, "status": r.status.value, "detail": r.detail}
                               for r in results], indent=2))
    else:
        width = max(len(r.name) for r in results)
        for r in results:
            typer.echo(f"{MARK[r.status]}  {r.name:<{width}}  {r.detail}")
    failed = [r.name for r in results if r.status is CheckStatus.FAIL]
    if failed:
        if not as_json:
            typer.echo(f"\n{len(failed)} check(s) failed: {', '.join(failed)}", err=True)
        raise typer.Exit(1)
