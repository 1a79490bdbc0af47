"""The ``shopserve`` command: one group per capability, errors turned into exit codes here."""

from __future__ import annotations

import sys

import typer

from shopserve.cli import (
    batch,
    bundle,
    doctor,
    drill,
    models,
    monitor,
    optimize,
    quickstart,
    serve,
    train,
    tune,
)
from shopserve.errors import ShopserveError

app = typer.Typer(
    name="shopserve",
    help="Take shop search, recommendation and ranking models to production, and prove "
    "they survive failures.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models.app.command("train")(train.train_cmd)
app.add_typer(models.app, name="models", help="Registry: versions, aliases, promotion, rollback.")
app.add_typer(batch.app, name="batch", help="Streaming, resumable batch scoring.")
app.add_typer(bundle.app, name="bundle", help="Air-gapped bundles: build, verify, install.")
app.add_typer(drill.app, name="drill", help="Disaster-recovery drills against the live service.")
app.add_typer(monitor.app, name="monitor", help="Metrics, drift and service status.")
app.add_typer(tune.app, name="tune", help="Capacity planning: replicas, batch size, cache size.")
app.command("optimize", help="Export, optimize, quantize with a quality gate.")(
    optimize.optimize_command
)
app.command("serve", help="Serve models online from a deployment file or registry refs.")(
    serve.serve
)
app.command("doctor", help="Check this machine before a deployment.")(doctor.doctor)
app.command("quickstart", help="Demo shop → model → optimized → registered → served.")(
    quickstart.quickstart
)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; a ``ShopserveError`` becomes its message on stderr and its exit code."""
    try:
        code = app(args=argv, standalone_mode=False)
    except ShopserveError as exc:
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except SystemExit as exc:  # typer/click exit with a code for --help and usage errors
        return int(exc.code or 0)
    except Exception as exc:
        # Usage errors of click (or of the copy of click that typer ships) know how to show
        # themselves; anything else is a bug and keeps its traceback.
        show, exit_code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(exit_code, int):
            show()
            return exit_code
        raise
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
