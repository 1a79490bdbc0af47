"""The model registry: versions, aliases and verified loads over SQLite and an object store.

A version becomes visible only when its row commits, after all its objects are in place;
several processes may register, promote and load at once.
"""

from __future__ import annotations

import getpass
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shopserve.config import home_settings
from shopserve.errors import AliasInUseError, IntegrityError, NotFoundError, UsageError
from shopserve.registry import aliases, db, rows
from shopserve.registry.archive import ImportLimits, export_archive, read_archive
from shopserve.registry.records import (
    FileRecord,
    GcReport,
    LoadedVersion,
    ModelSummary,
    ModelVersion,
    VersionDiff,
    diff_versions,
)
from shopserve.registry.refs import (
    parse_ref,
    validate_alias,
    validate_artifact_name,
    validate_name,
)
from shopserve.registry.store import ObjectStore
from shopserve.types import ModelKind, ModelSignature, Optimization, VersionStatus

TEMP_GRACE_S = 3600.0


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class Registry:
    """Models and their versions under one home directory."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.db_path = home / "registry.db"
        self.store = ObjectStore(home)
        db.initialize(self.db_path)

    @classmethod
    def open(cls, home: Path | None = None) -> Registry:
        """The registry in ``home`` (default ``SHOPSERVE_HOME`` or ``~/.shopserve``)."""
        root = (home.expanduser() if home is not None else home_settings().home_dir).absolute()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the registry home {root}: {exc}") from exc
        return cls(root)

    def register(
        self,
        name: str,
        files: Mapping[str, Path],
        kind: ModelKind,
        *,
        signature: ModelSignature | None = None,
        config: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        data_hash: str | None = None,
        parent: str | None = None,
        optimization: Optimization | None = None,
        author: str | None = None,
        status: VersionStatus = VersionStatus.READY,
        reason: str | None = None,
    ) -> ModelVersion:
        """Copy ``files`` into the store and record a new version of ``name``."""
        draft = ModelVersion(
            name=validate_name(name),
            version=0,
            kind=ModelKind(kind),
            files={},
            signature=signature,
            config=_json_config(config),
            metrics=_finite_metrics(metrics),
            data_hash=data_hash,
            parent=None if parent is None else str(parse_ref(parent)),
            optimization=optimization,
            created_at=datetime.now(UTC),
            author=author or current_user(),
            status=VersionStatus(status),
            reason=reason,
        )
        if draft.status is VersionStatus.REJECTED and not reason:
            raise UsageError("a REJECTED version needs a reason")
        if not files:
            raise UsageError(f"register {name!r}: give at least one artifact file")
        staged: dict[str, tuple[Path, FileRecord]] = {}
        try:
            for art, src in files.items():
                staged[art] = self._stage(art, Path(src))
            return self._commit(draft, staged, resolve_parent=True)
        finally:
            for temp, _ in staged.values():
                temp.unlink(missing_ok=True)

    def _stage(self, artifact: str, source: Path) -> tuple[Path, FileRecord]:
        validate_artifact_name(artifact)
        if not source.is_file():
            raise NotFoundError(f"artifact {artifact!r}: {source} is not a readable file")
        try:
            with source.open("rb") as handle:
                return self.store.write_temp(handle)
        except OSError as exc:
            raise UsageError(f"artifact {artifact!r}: cannot copy {source}: {exc}") from exc

    def _commit(
        self,
        draft: ModelVersion,
        staged: Mapping[str, tuple[Path, FileRecord]],
        resolve_parent: bool,
    ) -> ModelVersion:
        """Move staged objects into place and write the row, all under the write lock."""
        with db.transaction(self.db_path, write=True) as conn:
            parent = draft.parent
            if resolve_parent and parent is not None:
                ref = parse_ref(parent)
                parent = f"{ref.name}@{rows.resolve(conn, ref)}"
            version = rows.allocate_version(conn, draft.name, draft.kind)
            for temp, record in staged.values():
                self.store.commit_temp(temp, record)
            records = {art: record for art, (_, record) in staged.items()}
            mv = draft.model_copy(update={"version": version, "files": records, "parent": parent})
            rows.insert(conn, mv)
            return mv

    def get(self, ref: str) -> ModelVersion:
        """The record ``ref`` points at now."""
        parsed = parse_ref(ref)
        with db.transaction(self.db_path, write=False) as conn:
            return rows.fetch(conn, parsed.name, rows.resolve(conn, parsed))

    def load(self, ref: str) -> LoadedVersion:
        """``ref`` with every artifact verified (size and sha256) before it is handed out."""
        meta = self.get(ref)
        try:
            files = {
                art: self.store.verify(record, f"{meta.ref} artifact {art!r}")
                for art, record in meta.files.items()
            }
        except IntegrityError:
            self.get(meta.ref)  # NotFoundError when it was deleted (and collected) meanwhile
            raise
        return LoadedVersion(meta, files)

    def promote(self, ref: str, alias: str) -> ModelVersion:
        """Point ``alias`` at the version ``ref`` resolves to (atomically)."""
        parsed, alias = parse_ref(ref), validate_alias(alias)
        with db.transaction(self.db_path, write=True) as conn:
            version = rows.resolve(conn, parsed)
            aliases.set_alias(conn, parsed.name, alias, version, current_user())
            return rows.fetch(conn, parsed.name, version)

    def rollback(self, name: str, alias: str) -> ModelVersion:
        """Move ``name@alias`` back to its previous holder; returns that version."""
        parsed, alias = parse_ref(name), validate_alias(alias)
        with db.transaction(self.db_path, write=True) as conn:
            _, target = aliases.roll_back(conn, parsed.name, alias, current_user())
            return rows.fetch(conn, parsed.name, target)

    def update_metrics(
        self, ref: str, metrics: Mapping[str, float], data_hash: str | None = None
    ) -> ModelVersion:
        """Merge ``metrics`` into the version's metrics; replace its data hash when given."""
        parsed, new = parse_ref(ref), _finite_metrics(metrics)
        with db.transaction(self.db_path, write=True) as conn:
            version = rows.resolve(conn, parsed)
            current = rows.fetch(conn, parsed.name, version)
            conn.execute(
                "UPDATE versions SET metrics = ?, data_hash = ? WHERE name = ? AND version = ?",
                (
                    json.dumps({**current.metrics, **new}, sort_keys=True),
                    data_hash if data_hash is not None else current.data_hash,
                    parsed.name,
                    version,
                ),
            )
            return rows.fetch(conn, parsed.name, version)

    def list_models(self) -> list[ModelSummary]:
        with db.transaction(self.db_path, write=False) as conn:
            return rows.summaries(conn)

    def list_versions(self, name: str) -> list[ModelVersion]:
        parsed = parse_ref(name)
        with db.transaction(self.db_path, write=False) as conn:
            numbers = rows.version_numbers(conn, parsed.name)
            return [rows.fetch(conn, parsed.name, v) for v in numbers]

    def diff(self, a: str, b: str) -> VersionDiff:
        return diff_versions(self.get(a), self.get(b))

    def delete(self, ref: str) -> ModelVersion:
        """Remove a version's record (its objects go at the next ``gc``)."""
        parsed = parse_ref(ref)
        with db.transaction(self.db_path, write=True) as conn:
            mv = rows.fetch(conn, parsed.name, rows.resolve(conn, parsed))
            if mv.aliases:
                held = ", ".join(f"{mv.name}@{a}" for a in mv.aliases)
                raise AliasInUseError(
                    f"cannot delete {mv.ref}: alias {held} points at it; promote another "
                    "version to that alias first"
                )
            conn.execute(
                "DELETE FROM versions WHERE name = ? AND version = ?", (mv.name, mv.version)
            )
            return mv

    def gc(self, temp_grace_s: float = TEMP_GRACE_S) -> GcReport:
        """Remove objects no version refers to and temp files older than ``temp_grace_s``."""
        removed = freed = 0
        with db.transaction(self.db_path, write=True) as conn:  # no commit can race the sweep
            keep = rows.referenced_objects(conn)
            for path in self.store.iter_objects():
                if path.name not in keep:
                    freed += path.stat().st_size
                    path.unlink()
                    removed += 1
            temps, temp_bytes = self.store.remove_stale_temps(temp_grace_s)
        return GcReport(
            objects_removed=removed, temp_files_removed=temps, bytes_freed=freed + temp_bytes
        )

    def check(self) -> list[str]:
        """Problems found: database integrity, missing or altered objects (empty when healthy)."""
        problems = db.integrity_problems(self.db_path)
        for summary in self.list_models():
            for mv in self.list_versions(summary.name):
                for art, record in mv.files.items():
                    try:
                        self.store.verify(record, f"{mv.ref} artifact {art!r}")
                    except IntegrityError as exc:
                        problems.append(str(exc))
        return problems

    def export_version(self, ref: str, path: Path) -> Path:
        """Write ``ref`` as one ``.tar.gz`` file (manifest + artifacts), verified as it goes."""
        return export_archive(self.get(ref), self.store, Path(path))

    def import_version(
        self, path: Path, *, name: str | None = None, limits: ImportLimits | None = None
    ) -> ModelVersion:
        """Add the version in an exported file as the next version of its (or ``name``'s) model."""
        manifest, staged = read_archive(Path(path), self.store, limits or ImportLimits())
        try:
            draft = manifest.model_copy(
                update={
                    "name": manifest.name if name is None else validate_name(name),
                    "origin": manifest.origin or manifest.ref,
                    "aliases": (),
                }
            )
            return self._commit(draft, staged, resolve_parent=False)
        finally:
            for temp, _ in staged.values():
                temp.unlink(missing_ok=True)


def _json_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    try:
        return dict(json.loads(json.dumps(dict(config or {}), allow_nan=False)))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"config is not plain JSON: {exc}") from exc


def _finite_metrics(metrics: Mapping[str, float] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"metric {key!r}: expected a number, got {value!r}") from exc
        if not math.isfinite(number):
            raise UsageError(f"metric {key!r}: expected a finite number, got {value!r}")
        out[str(key)] = number
    return out
