"""What the registry hands out: versions, their files, loaded versions, diffs and reports.

All frozen pydantic models, so they round-trip through JSON (CLI ``--json``, exports, HTTP).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shopserve.errors import NotFoundError
from shopserve.types import ModelKind, ModelSignature, Optimization, VersionStatus


class FileRecord(BaseModel):
    """One stored artifact: its sha256 (hex) and size in bytes."""

    model_config = ConfigDict(frozen=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class ModelVersion(BaseModel):
    """One registered version of a model and everything recorded about it."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: int
    kind: ModelKind
    files: dict[str, FileRecord]
    signature: ModelSignature | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    data_hash: str | None = None
    parent: str | None = None
    optimization: Optimization | None = None
    created_at: datetime
    author: str
    status: VersionStatus = VersionStatus.READY
    reason: str | None = None
    aliases: tuple[str, ...] = ()
    origin: str | None = None  # the ref this version had in the registry it was imported from

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


class LoadedVersion:
    """A version whose every artifact was just verified (size and sha256) on disk."""

    def __init__(self, meta: ModelVersion, files: Mapping[str, Path]) -> None:
        self.meta = meta
        self.files: Mapping[str, Path] = dict(files)

    def read_bytes(self, name: str) -> bytes:
        """The content of artifact ``name``."""
        try:
            path = self.files[name]
        except KeyError as exc:
            known = ", ".join(sorted(self.files)) or "none"
            raise NotFoundError(
                f"{self.meta.ref} has no artifact {name!r} (it has: {known})"
            ) from exc
        return path.read_bytes()

    def __repr__(self) -> str:
        return f"LoadedVersion({self.meta.ref}, files={sorted(self.files)})"


class ModelSummary(BaseModel):
    """One line of ``list_models``."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: ModelKind
    versions: int
    latest: int | None  # highest READY version
    aliases: dict[str, int]


class MetricDelta(BaseModel):
    """One metric of two versions side by side."""

    model_config = ConfigDict(frozen=True)

    name: str
    a: float | None
    b: float | None

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a


class VersionDiff(BaseModel):
    """How version ``b`` differs from version ``a``."""

    model_config = ConfigDict(frozen=True)

    a: str
    b: str
    metrics: tuple[MetricDelta, ...]
    files_added: tuple[str, ...]
    files_removed: tuple[str, ...]
    files_changed: tuple[str, ...]
    config_changed: tuple[str, ...]
    same_data: bool
    same_signature: bool


class GcReport(BaseModel):
    """What ``gc`` removed."""

    model_config = ConfigDict(frozen=True)

    objects_removed: int
    temp_files_removed: int
    bytes_freed: int


def diff_versions(a: ModelVersion, b: ModelVersion) -> VersionDiff:
    """Metrics side by side (union of names, sorted) and what changed in files and config."""
    metrics = tuple(
        MetricDelta(name=m, a=a.metrics.get(m), b=b.metrics.get(m))
        for m in sorted(a.metrics.keys() | b.metrics.keys())
    )
    keys = a.config.keys() | b.config.keys()
    return VersionDiff(
        a=a.ref,
        b=b.ref,
        metrics=metrics,
        files_added=tuple(sorted(b.files.keys() - a.files.keys())),
        files_removed=tuple(sorted(a.files.keys() - b.files.keys())),
        files_changed=tuple(
            sorted(f for f in a.files.keys() & b.files.keys() if a.files[f] != b.files[f])
        ),
        config_changed=tuple(sorted(k for k in keys if a.config.get(k) != b.config.get(k))),
        same_data=a.data_hash == b.data_hash,
        same_signature=a.signature == b.signature,
    )
