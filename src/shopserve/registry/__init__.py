"""The model registry: versioned, checksummed model artifacts with movable aliases.

SQLite metadata and a content-addressed store under ``SHOPSERVE_HOME`` (see ``Registry``).
"""

from shopserve.registry.archive import ExportManifest, ImportLimits
from shopserve.registry.records import (
    FileRecord,
    GcReport,
    LoadedVersion,
    MetricDelta,
    ModelSummary,
    ModelVersion,
    VersionDiff,
)
from shopserve.registry.refs import Ref, parse_ref
from shopserve.registry.registry import Registry

__all__ = [
    "ExportManifest",
    "FileRecord",
    "GcReport",
    "ImportLimits",
    "LoadedVersion",
    "MetricDelta",
    "ModelSummary",
    "ModelVersion",
    "Ref",
    "Registry",
    "VersionDiff",
    "parse_ref",
]
