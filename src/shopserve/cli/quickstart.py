"""`shopserve quickstart`: the whole path on the demo shop (or real data with --data)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from shopserve.config import home_settings
from shopserve.errors import NotFoundError


class Size(StrEnum):
    SMALL = "small"
    MEDIUM = "medium"
    LARGE = "large"


def quickstart(
    data: Annotated[Path | None, typer.Option(
        help="Folder with homedepot/, online-retail/, criteo-sample/ (default: a demo shop)."
    )] = None,
    size: Annotated[Size, typer.Option(help="Size of the generated demo shop.")] = Size.MEDIUM,
    seed: Annotated[int, typer.Option(help="Seed of the demo shop.")] = 0,
    home: Annotated[Path | None, typer.Option(help="Registry home (else SHOPSERVE_HOME).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to serve on (default: free).")] = None,
    keep_serving: Annotated[bool, typer.Option(help="Keep serving after the samples.")] = False,
) -> None:
    """Demo shop → reference models → optimized → registered → served → sample queries."""
    from shopserve.quickstart import QuickstartSpec, run_quickstart

    if data is not None and not data.is_dir():
        raise NotFoundError(f"--data {data}: no such folder")
    spec = QuickstartSpec(settings=home_settings(home=home), data=data, size=size.value,
                          seed=seed, port=port, keep_serving=keep_serving)
    run_quickstart(spec, echo=typer.echo)
