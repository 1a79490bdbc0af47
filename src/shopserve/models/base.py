"""What every reference model shares: the trained result handed to the registry, and a hit.

Training entry points return a ``TrainedModel``; pipelines answer with ``Hit`` lists.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shopserve.types import ModelKind, ModelSignature

EVAL_FILE = "eval.parquet"
GRAPH_FILE = "model.onnx"


@dataclass(frozen=True)
class Hit:
    """One answer of a search or recommendation: a product, its score and its title."""

    product_id: str
    score: float
    title: str = ""


@dataclass(frozen=True)
class TrainedModel:
    """A trained reference model on disk, ready for ``Registry.register``."""

    kind: ModelKind
    files: Mapping[str, Path]
    config: dict[str, Any]
    signature: ModelSignature | None
    metrics: dict[str, float] = field(default_factory=dict)
    data_hash: str = ""


def file_hash(path: Path) -> str:
    """``sha256:<hex>`` of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"
