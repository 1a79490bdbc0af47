"""``bundle verify`` and ``bundle install`` for shopserve: the stdlib checks, errors translated.

The checks themselves live in ``install_script`` so that ``install.py`` applies the same ones.
"""

from __future__ import annotations

import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from shopserve.bundle import install_script as script
from shopserve.bundle.manifest import BundleManifest, parse_manifest
from shopserve.errors import IntegrityError, NotFoundError, ShopserveError, UsageError

Limits = script.Limits


class VerifyReport(BaseModel):
    """A bundle whose every file matched its manifest (and signature, when signed)."""

    model_config = ConfigDict(frozen=True)

    path: Path
    manifest: BundleManifest
    signed_by: str | None  # hex ed25519 public key, None when unsigned


@contextmanager
def translated() -> Iterator[None]:
    """Turn ``install_script.BundleError`` into the matching ``ShopserveError``."""
    try:
        yield
    except script.BundleError as exc:
        kinds: dict[str, type[ShopserveError]] = {"usage": UsageError, "notfound": NotFoundError}
        raise kinds.get(exc.kind, IntegrityError)(str(exc)) from exc


def read_trusted_key(path: Path | None) -> bytes | None:
    """The public key in ``path`` (as written by ``bundle keygen``), or ``None``."""
    if path is None:
        return None
    with translated():
        return script.read_public_key(path)


def verify_bundle(path: Path, trusted_key: Path | None = None,
                  limits: Limits | None = None) -> VerifyReport:
    """Check every member, checksum and the signature; nothing is written."""
    key = read_trusted_key(trusted_key)
    with translated():
        checked = script.verify_archive(Path(path), limits, key)
        signed_by = script.check_signature(checked, key)
    return VerifyReport(path=path, manifest=parse_manifest(checked.manifest_bytes, path),
                        signed_by=signed_by)


def install_bundle(path: Path, prefix: Path, trusted_key: Path | None = None,
                   limits: Limits | None = None) -> str:
    """Verify, unpack into ``prefix``, build its venv offline, import models; the serve command."""
    key = read_trusted_key(trusted_key)
    with translated():
        return script.install(Path(path), Path(prefix), key, limits)


def read_manifest(path: Path) -> BundleManifest:
    """Only the manifest (the first member) of a bundle, checked like any member."""
    if not path.is_file():
        raise NotFoundError(f"{path}: no such file")
    limits = script.Limits()
    try:
        with tarfile.open(path, "r|gz") as tar, translated():
            member = tar.next()
            if member is None or script.check_member(member, set(), limits) != script.MANIFEST:
                raise IntegrityError(f"{path}: the first member is not {script.MANIFEST}")
            if member.size > limits.max_manifest_bytes:
                raise IntegrityError(f"{path}: {script.MANIFEST} is over the size limit")
            handle = tar.extractfile(member)
            raw = b"" if handle is None else handle.read(member.size)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise IntegrityError(f"{path}: truncated or not a bundle ({exc})") from exc
    return parse_manifest(raw, path)
