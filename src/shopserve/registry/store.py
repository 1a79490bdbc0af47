"""Content-addressed artifact store: ``objects/<sha[:2]>/<sha>``, written atomically.

Every object is written to a temp file, fsynced, then renamed into place, so a reader sees
either nothing or the whole file; ``verify`` re-hashes an object against its record.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import IO

from shopserve.errors import IntegrityError, NotFoundError
from shopserve.registry.records import FileRecord

CHUNK = 1 << 20
TMP_SUFFIX = ".tmp"


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ObjectStore:
    """Objects named by their sha256 under ``root/objects``; temp files under ``root/tmp``."""

    def __init__(self, root: Path) -> None:
        self.objects = root / "objects"
        self.tmp = root / "tmp"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.objects / sha256[:2] / sha256

    def new_temp(self) -> Path:
        return self.tmp / f"{os.getpid()}-{secrets.token_hex(8)}{TMP_SUFFIX}"

    def write_temp(self, source: IO[bytes], limit: int | None = None) -> tuple[Path, FileRecord]:
        """Copy ``source`` into a fsynced temp file, hashing it; at most ``limit`` bytes."""
        temp = self.new_temp()
        digest = hashlib.sha256()
        size = 0
        try:
            with temp.open("xb") as out:
                while chunk := source.read(CHUNK):
                    size += len(chunk)
                    if limit is not None and size > limit:
                        raise IntegrityError(f"more than the declared {limit} bytes")
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return temp, FileRecord(sha256=digest.hexdigest(), size=size)

    def commit_temp(self, temp: Path, record: FileRecord) -> Path:
        """Move a verified temp file to its object path (replacing any damaged copy)."""
        target = self.path(record.sha256)
        target.parent.mkdir(exist_ok=True)
        os.chmod(temp, 0o444)
        os.replace(temp, target)
        fsync_dir(target.parent)
        return target

    def put_file(self, source: Path) -> FileRecord:
        """Store the content of ``source``; returns its record."""
        with source.open("rb") as handle:
            temp, record = self.write_temp(handle)
        self.commit_temp(temp, record)
        return record

    def has(self, record: FileRecord) -> bool:
        """Whether the object is present with the recorded size (cheap; no hashing)."""
        try:
            return self.path(record.sha256).stat().st_size == record.size
        except FileNotFoundError:
            return False

    def verify(self, record: FileRecord, what: str) -> Path:
        """Re-hash an object; ``IntegrityError`` naming ``what`` when missing or different."""
        path = self.path(record.sha256)
        try:
            size = path.stat().st_size
        except FileNotFoundError as exc:
            raise IntegrityError(f"{what}: stored object {record.sha256[:12]} is missing") from exc
        if size != record.size:
            raise IntegrityError(
                f"{what}: stored object has {size} bytes, expected {record.size} (truncated "
                "or altered)"
            )
        if hash_file(path) != record.sha256:
            raise IntegrityError(f"{what}: sha256 mismatch, the stored object was altered")
        return path

    def iter_objects(self) -> Iterator[Path]:
        for sub in sorted(self.objects.iterdir()):
            if sub.is_dir():
                yield from sorted(p for p in sub.iterdir() if p.is_file())

    def remove_stale_temps(self, min_age_s: float) -> tuple[int, int]:
        """Delete temp files older than ``min_age_s`` (left by crashed writers)."""
        removed = freed = 0
        now = time.time()
        for temp in self.tmp.iterdir():
            with suppress(FileNotFoundError):
                stat = temp.stat()
                if now - stat.st_mtime >= min_age_s and temp.is_file():
                    temp.unlink()
                    removed += 1
                    freed += stat.st_size
        return removed, freed


def hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    except FileNotFoundError as exc:
        raise NotFoundError(f"{path}: no such file") from exc
    return digest.hexdigest()
