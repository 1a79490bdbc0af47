"""One version as one file: a ``.tar.gz`` of ``manifest.json`` then ``files/<artifact>``.

Imports read the archive as a stream and trust nothing in it: every member is checked (name,
type, count, size) before its bytes are read, and every checksum before anything is committed.
"""

from __future__ import annotations

import io
import os
import secrets
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shopserve.config import describe_validation_error
from shopserve.errors import IntegrityError, NotFoundError, UsageError
from shopserve.registry.records import FileRecord, ModelVersion
from shopserve.registry.refs import validate_artifact_name, validate_name
from shopserve.registry.store import ObjectStore

FORMAT: Literal["shopserve-model-version/1"] = "shopserve-model-version/1"
MANIFEST = "manifest.json"
FILES_DIR = "files/"
GiB = 1 << 30

Staged = dict[str, tuple[Path, FileRecord]]


class ImportLimits(BaseModel):
    """Bounds an archive must stay within (against tar bombs)."""

    model_config = ConfigDict(frozen=True)

    max_members: int = Field(default=1000, ge=2)
    max_member_bytes: int = Field(default=16 * GiB, ge=1)
    max_total_bytes: int = Field(default=32 * GiB, ge=1)
    max_manifest_bytes: int = Field(default=16 << 20, ge=1)


class ExportManifest(BaseModel):
    """The first member of an export: the version's record, with sha256 and size per file."""

    model_config = ConfigDict(frozen=True)

    format: Literal["shopserve-model-version/1"]
    version: ModelVersion


def export_archive(mv: ModelVersion, store: ObjectStore, path: Path) -> Path:
    """Write ``mv`` to ``path`` atomically; each object is verified before it is packed."""
    if not path.parent.is_dir():
        raise NotFoundError(f"cannot export to {path}: folder {path.parent} does not exist")
    manifest = ExportManifest(format=FORMAT, version=mv.model_copy(update={"aliases": ()}))
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    mtime = mv.created_at.timestamp()
    try:
        with tarfile.open(temp, "w:gz", format=tarfile.PAX_FORMAT) as tar:
            data = manifest.model_dump_json(indent=2).encode()
            tar.addfile(_info(MANIFEST, len(data), mtime), io.BytesIO(data))
            for art in sorted(mv.files):
                record = mv.files[art]
                obj = store.verify(record, f"{mv.ref} artifact {art!r}")
                with obj.open("rb") as handle:
                    tar.addfile(_info(FILES_DIR + art, record.size, mtime), handle)
        with temp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path


def _info(name: str, size: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, int(mtime), 0o644
    info.uname = info.gname = ""
    return info


def read_archive(
    path: Path, store: ObjectStore, limits: ImportLimits
) -> tuple[ModelVersion, Staged]:
    """Check and stage an export; returns its record and verified temp objects per artifact.

    On any problem the staged temp files are removed and nothing else was written.
    """
    staged: Staged = {}
    try:
        with _open(path) as tar:
            manifest = _read_members(path, tar, store, limits, staged)
    except BaseException:
        for temp, _ in staged.values():
            temp.unlink(missing_ok=True)
        raise
    return manifest.version, staged


@contextmanager
def _open(path: Path) -> Iterator[tarfile.TarFile]:
    if not path.is_file():
        raise NotFoundError(f"{path}: no such file")
    try:
        with tarfile.open(path, "r:gz") as tar:
            yield tar
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise IntegrityError(f"{path}: not a readable shopserve export ({exc})") from exc


def _read_members(
    path: Path, tar: tarfile.TarFile, store: ObjectStore, limits: ImportLimits, staged: Staged
) -> ExportManifest:
    manifest: ExportManifest | None = None
    seen: set[str] = set()
    while (member := tar.next()) is not None:
        _check_member(path, member, seen, limits)
        if manifest is None:
            if member.name != MANIFEST:
                raise UsageError(
                    f"{path}: the first member must be {MANIFEST}, not {member.name!r}"
                )
            manifest = _read_manifest(path, tar, member, limits)
            continue
        art = _declared(path, member, manifest)
        handle = tar.extractfile(member)
        if handle is None:
            raise UsageError(f"{path}: member {member.name!r} has no data")
        record = manifest.version.files[art]
        temp, got = store.write_temp(handle, limit=record.size)
        staged[art] = (temp, got)
        if got != record:
            raise IntegrityError(
                f"{path}: artifact {art!r} does not match its manifest checksum "
                f"({got.size} bytes, sha256 {got.sha256[:12]}; expected {record.size} bytes, "
                f"sha256 {record.sha256[:12]})"
            )
    if manifest is None:
        raise UsageError(f"{path}: empty archive, no {MANIFEST}")
    missing = sorted(manifest.version.files.keys() - staged.keys())
    if missing:
        raise IntegrityError(f"{path}: artifact(s) {', '.join(missing)} missing from the archive")
    return manifest


def _check_member(
    path: Path, member: tarfile.TarInfo, seen: set[str], limits: ImportLimits
) -> None:
    name = member.name
    if len(seen) >= limits.max_members:
        raise UsageError(f"{path}: more than {limits.max_members} members, refused")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UsageError(f"{path}: member {name!r} has an absolute path, refused")
    if ".." in name.replace("\\", "/").split("/"):
        raise UsageError(f"{path}: member {name!r} leaves the archive folder ('..'), refused")
    if member.issym() or member.islnk():
        raise UsageError(f"{path}: member {name!r} is a link, refused")
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        raise UsageError(f"{path}: member {name!r} is not a regular file, refused")
    if name in seen:
        raise UsageError(f"{path}: member {name!r} appears twice, refused")
    if member.size > limits.max_member_bytes:
        raise UsageError(
            f"{path}: member {name!r} has {member.size} bytes, over the limit of "
            f"{limits.max_member_bytes}, refused"
        )
    seen.add(name)


def _read_manifest(
    path: Path, tar: tarfile.TarFile, member: tarfile.TarInfo, limits: ImportLimits
) -> ExportManifest:
    if member.size > limits.max_manifest_bytes:
        raise UsageError(f"{path}: {MANIFEST} has {member.size} bytes, over the limit, refused")
    handle = tar.extractfile(member)
    raw = b"" if handle is None else handle.read(limits.max_manifest_bytes + 1)
    try:
        manifest = ExportManifest.model_validate_json(raw)
    except ValidationError as exc:
        raise UsageError(describe_validation_error(f"{path}: {MANIFEST}", exc)) from exc
    validate_name(manifest.version.name)
    for art in manifest.version.files:
        validate_artifact_name(art)
    total = sum(r.size for r in manifest.version.files.values())
    if total > limits.max_total_bytes:
        raise UsageError(
            f"{path}: artifacts total {total} bytes, over the limit of {limits.max_total_bytes}"
        )
    if len(manifest.version.files) + 1 > limits.max_members:
        raise UsageError(f"{path}: more than {limits.max_members} members declared, refused")
    return manifest


def _declared(path: Path, member: tarfile.TarInfo, manifest: ExportManifest) -> str:
    art = member.name.removeprefix(FILES_DIR)
    record = manifest.version.files.get(art)
    if not member.name.startswith(FILES_DIR) or record is None:
        raise UsageError(f"{path}: member {member.name!r} is not declared in {MANIFEST}")
    if member.size != record.size:
        raise IntegrityError(
            f"{path}: artifact {art!r} has {member.size} bytes in the archive, "
            f"manifest says {record.size}"
        )
    return art
