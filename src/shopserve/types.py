"""Types shared by every capability: model kinds, tensor signatures, version states.

These are plain, frozen pydantic models so that they round-trip through JSON (registry
metadata, HTTP, bundles) without custom code.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ModelKind(enum.StrEnum):
    """What a model does for the shop; decides which domain endpoint serves it."""

    SEARCH = "search"  # query text -> ranked products
    RECOMMEND = "recommend"  # customer -> items
    RANK = "rank"  # customer + candidate rows -> scores (CTR)
    GENERIC = "generic"  # any ONNX model, Open Inference Protocol only


class VersionStatus(enum.StrEnum):
    """Lifecycle of a registered version."""

    READY = "ready"  # may hold aliases and serve
    REJECTED = "rejected"  # failed its quality gate; never gets an alias


class TensorSpec(BaseModel):
    """One named input or output of a model. ``-1`` in ``shape`` is a dynamic axis."""

    model_config = ConfigDict(frozen=True)

    name: str
    dtype: str  # numpy dtype name: float32, int64, ...
    shape: tuple[int, ...]


class ModelSignature(BaseModel):
    """The tensors a model takes and gives."""

    model_config = ConfigDict(frozen=True)

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)


class Optimization(BaseModel):
    """How a child version was made from its parent."""

    model_config = ConfigDict(frozen=True)

    recipe: str
    params: dict[str, Any] = Field(default_factory=dict)
