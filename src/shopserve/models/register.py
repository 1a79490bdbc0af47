"""Train a reference model and record it in the registry in one step.

Artifacts are written to a temporary folder, copied into the store by ``register``, then removed.
"""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shopserve.errors import UsageError
from shopserve.models.base import TrainedModel
from shopserve.types import ModelKind

if TYPE_CHECKING:
    from shopserve.registry import ModelVersion, Registry


def train(kind: ModelKind, shop: Any, out_dir: Path, spec: Any = None) -> TrainedModel:
    """Train the reference model of ``kind`` on ``shop`` into ``out_dir``."""
    if kind is ModelKind.RANK:
        from shopserve.models.ctr import train_ctr

        return train_ctr(shop, out_dir, spec)
    if kind is ModelKind.RECOMMEND:
        from shopserve.models.recommend import train_recommender

        return train_recommender(shop, out_dir, spec)
    if kind is ModelKind.SEARCH:
        search = importlib.import_module("shopserve.models.search")
        trained: TrainedModel = search.train_search(shop, out_dir, spec)
        return trained
    raise UsageError(f"there is no reference model of kind {kind.value!r} to train")


def train_and_register(
    kind: ModelKind, shop: Any, registry: Registry, name: str, spec: Any = None
) -> ModelVersion:
    """Train, then register the result with its metrics, signature and evaluation data."""
    with tempfile.TemporaryDirectory(prefix="shopserve-train-") as tmp:
        trained = train(kind, shop, Path(tmp), spec)
        return registry.register(
            name, files=trained.files, kind=trained.kind, signature=trained.signature,
            config=trained.config, metrics=trained.metrics, data_hash=trained.data_hash,
        )
