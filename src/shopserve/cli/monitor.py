"""`shopserve monitor`: the command-line face of shopserve.monitor."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)
