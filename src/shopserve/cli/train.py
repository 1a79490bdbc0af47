"""`shopserve models train`: train a reference model on shop data and register it."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from shopserve.cli.models import _registry
from shopserve.errors import NotFoundError
from shopserve.types import ModelKind


class Trainer(StrEnum):
    NUMPY = "numpy"
    TORCH = "torch"


def train_cmd(
    ctx: typer.Context,
    kind: Annotated[ModelKind, typer.Argument(help="rank (CTR), recommend or search.")],
    name: Annotated[str | None, typer.Option(help="Model name (default: the kind).")] = None,
    data: Annotated[Path | None, typer.Option(
        help="Folder of real data (homedepot/, online-retail/, criteo-sample/).")] = None,
    size: Annotated[str, typer.Option(help="Demo shop size: small, medium, large.")] = "medium",
    seed: Annotated[int, typer.Option(help="Demo shop seed.")] = 0,
    trainer: Annotated[Trainer, typer.Option(help="CTR trainer (torch needs [train]).")]
    = Trainer.NUMPY,
    promote: Annotated[str | None, typer.Option(help="Alias to point at the new version.")]
    = None,
) -> None:
    """Train a reference model, evaluate it on held-out data and register it."""
    from shopserve.data import DemoShopSpec, generate_demo_shop, load_shop
    from shopserve.models import train_and_register

    if data is not None and not data.is_dir():
        raise NotFoundError(f"--data {data}: no such folder")
    sizes = {"small": DemoShopSpec.small, "medium": DemoShopSpec.medium,
             "large": DemoShopSpec.large}
    if data is None and size not in sizes:
        raise NotFoundError(f"--size {size!r}: expected one of {sorted(sizes)}")
    shop = load_shop(data) if data is not None else generate_demo_shop(sizes[size](seed=seed))
    registry = _registry(ctx)
    version = train_and_register(kind, shop, registry, name or kind.value, _spec(kind, trainer))
    typer.echo(f"registered {version.ref}")
    for key, value in sorted(version.metrics.items()):
        typer.echo(f"  {key:<40} {value:.4f}")
    if promote:
        registry.promote(version.ref, promote)
        typer.echo(f"{promote} → {version.ref}")


def _spec(kind: ModelKind, trainer: Trainer) -> Any:
    if kind is ModelKind.RANK:
        from shopserve.models import CtrTrainer, CtrTrainSpec

        return CtrTrainSpec(trainer=CtrTrainer(trainer.value))
    return None
