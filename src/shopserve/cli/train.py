"""`shopserve models train`: train a reference model on shop data and register it."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from shopserve.cli.models import _registry
from shopserve.config import describe_validation_error
from shopserve.errors import NotFoundError, UsageError
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
    max_queries: Annotated[int | None, typer.Option(
        help="Search: a sample of this many queries; their judged products become the catalog "
        "(default: every query, the whole catalog).", rich_help_panel="Search")] = None,
    eval_percent: Annotated[int, typer.Option(
        help="Search: share of queries held out, by a hash of the query text.",
        rich_help_panel="Search")] = 20,
    epochs: Annotated[int, typer.Option(help="Search: re-ranker training epochs.",
                                        rich_help_panel="Search")] = 200,
    split_seed: Annotated[int, typer.Option(
        help="Search: seed of the re-ranker's negatives and the index build.",
        rich_help_panel="Search")] = 0,
    encoder_cache: Annotated[Path | None, typer.Option(
        help="Search: where the MiniLM export is cached (default: "
        "$SHOPSERVE_HOME/cache/search-encoder).", rich_help_panel="Search")] = None,
) -> None:
    """Train a reference model, evaluate it on held-out data and register it."""
    from shopserve.data import DemoShopSpec, generate_demo_shop, load_shop
    from shopserve.models import train_and_register

    search = {"max_queries": max_queries, "eval_percent": eval_percent, "epochs": epochs,
              "seed": split_seed, "cache_dir": encoder_cache}
    spec = _spec(kind, trainer, search)
    if data is not None and not data.is_dir():
        raise NotFoundError(f"--data {data}: no such folder")
    sizes = {"small": DemoShopSpec.small, "medium": DemoShopSpec.medium,
             "large": DemoShopSpec.large}
    if data is None and size not in sizes:
        raise NotFoundError(f"--size {size!r}: expected one of {sorted(sizes)}")
    shop = load_shop(data) if data is not None else generate_demo_shop(sizes[size](seed=seed))
    registry = _registry(ctx)
    version = train_and_register(kind, shop, registry, name or kind.value, spec)
    typer.echo(f"registered {version.ref}")
    for key, value in sorted(version.metrics.items()):
        typer.echo(f"  {key:<40} {value:.4f}")
    if promote:
        registry.promote(version.ref, promote)
        typer.echo(f"{promote} → {version.ref}")


def _spec(kind: ModelKind, trainer: Trainer, search: dict[str, Any]) -> Any:
    """The kind's train spec from the flags; search flags on another kind are refused."""
    defaults = {"max_queries": None, "eval_percent": 20, "epochs": 200, "seed": 0,
                "cache_dir": None}
    given = sorted(k for k, v in search.items() if v != defaults[k])
    if kind is not ModelKind.SEARCH and given:
        flags = ", ".join("--" + {"seed": "split-seed", "cache_dir": "encoder-cache"}.get(
            k, k.replace("_", "-")) for k in given)
        raise UsageError(f"{flags}: only for 'search', not {kind.value!r}")
    if kind is ModelKind.SEARCH and trainer is not Trainer.NUMPY:
        raise UsageError("--trainer: only for 'rank' (the search encoder is always MiniLM)")
    if kind is ModelKind.RANK:
        from shopserve.models import CtrTrainer, CtrTrainSpec

        return CtrTrainSpec(trainer=CtrTrainer(trainer.value))
    if kind is ModelKind.SEARCH:
        from shopserve.models.search import SearchTrainSpec

        try:
            return SearchTrainSpec(**search)
        except ValidationError as exc:
            raise UsageError(describe_validation_error("search training flags", exc)) from exc
    return None
