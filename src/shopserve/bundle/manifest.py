"""The typed view of a bundle's ``manifest.json``: models, wheels, and every file's checksum.

``install_script`` reads the same JSON with the standard library only; this is the shopserve side.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shopserve.config import describe_validation_error
from shopserve.errors import UsageError
from shopserve.registry import FileRecord

FORMAT: Literal["shopserve-bundle/1"] = "shopserve-bundle/1"


class BundledModel(BaseModel):
    """One model version in the bundle, as the registry export file ``file``."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: int = Field(ge=1)
    requested: tuple[str, ...]  # the refs the builder asked for, e.g. ("search@production",)
    aliases: tuple[str, ...]  # set again on the imported version, so those refs still resolve
    file: str
    artifacts: dict[str, FileRecord]  # the version's own files, for ``bundle diff``

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


class BundledWheel(BaseModel):
    """One wheel under ``wheels/``."""

    model_config = ConfigDict(frozen=True)

    file: str
    name: str
    version: str


class BundleManifest(BaseModel):
    """Everything in a bundle; ``files`` lists every file but the manifest and its signature."""

    model_config = ConfigDict(frozen=True)

    format: Literal["shopserve-bundle/1"] = FORMAT
    created_at: datetime
    shopserve_version: str
    platform: str
    platforms: tuple[str, ...]  # every tag the wheels were allowed to have
    python: str
    models: tuple[BundledModel, ...]
    deployment: str | None = None
    shopserve_wheel: str
    wheels: tuple[BundledWheel, ...]
    files: dict[str, FileRecord]

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2).encode("utf-8")


def parse_manifest(raw: bytes, source: Path | str) -> BundleManifest:
    """Validate manifest bytes, naming the field that is wrong."""
    try:
        return BundleManifest.model_validate_json(raw)
    except ValidationError as exc:
        raise UsageError(describe_validation_error(f"{source}: manifest.json", exc)) from exc
