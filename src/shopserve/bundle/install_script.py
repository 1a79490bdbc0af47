"""Verify, unpack and install a shopserve bundle with nothing but the Python standard library.

Copied verbatim into every bundle as ``install.py`` (``python3 install.py --prefix DIR``) and
used by ``shopserve bundle verify/install``, so both paths apply the very same checks; it is one
file, ed25519 included, so that it runs on a machine where nothing else is installed yet.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

FORMAT = "shopserve-bundle/1"
ROOT = "shopserve-bundle"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
CHUNK = 1 << 20
GiB = 1 << 30


class BundleError(Exception):
    """A bundle that cannot be used; ``kind`` says why: integrity, usage or notfound."""

    def __init__(self, message: str, kind: str = "integrity") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Limits:
    """Bounds a bundle must stay within (against tar bombs)."""

    max_members: int = 20000
    max_member_bytes: int = 8 * GiB
    max_total_bytes: int = 32 * GiB
    max_manifest_bytes: int = 8 << 20


@dataclass
class Checked:
    """What a verification pass found: the manifest, its signature, and every problem."""

    manifest: dict[str, Any]
    manifest_bytes: bytes
    signature: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)


def check_member(member: tarfile.TarInfo, seen: set[str], limits: Limits) -> str:
    """The bundle-relative path of a safe member; ``BundleError`` naming it otherwise."""
    name = member.name
    if len(seen) >= limits.max_members:
        raise BundleError(f"more than {limits.max_members} members, refused")
    parts = name.replace("\\", "/").split("/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise BundleError(f"member {name!r} has an absolute path, refused")
    if ".." in parts or "" in parts[1:] or "." in parts:
        raise BundleError(f"member {name!r} leaves the bundle folder, refused")
    if member.issym() or member.islnk():
        raise BundleError(f"member {name!r} is a link ({member.linkname!r}), refused")
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        raise BundleError(f"member {name!r} is a device, folder or special file, refused")
    if parts[0] != ROOT or len(parts) < 2:
        raise BundleError(f"member {name!r} is outside the {ROOT}/ folder, refused")
    if name in seen:
        raise BundleError(f"member {name!r} appears twice, refused")
    if member.size > limits.max_member_bytes:
        raise BundleError(f"member {name!r} has {member.size} bytes, over the limit, refused")
    seen.add(name)
    return "/".join(parts[1:])


def parse_manifest(raw: bytes, limits: Limits) -> dict[str, Any]:
    """The manifest as a dict, after checking its shape, file names and declared sizes."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"{MANIFEST} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BundleError(f"{MANIFEST}: not a {FORMAT} manifest", kind="usage")
    files = data.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{MANIFEST}: 'files' must be a non-empty mapping", kind="usage")
    total = 0
    for rel, rec in files.items():
        parts = str(rel).split("/")
        if any(p in ("", ".", "..") for p in parts) or rel in (MANIFEST, SIGNATURE):
            raise BundleError(f"{MANIFEST}: file name {rel!r} is not allowed", kind="usage")
        if not (isinstance(rec, dict) and isinstance(rec.get("size"), int) and rec["size"] >= 0
                and isinstance(rec.get("sha256"), str) and len(rec["sha256"]) == 64):
            raise BundleError(f"{MANIFEST}: files.{rel}: expected sha256 and size", kind="usage")
        total += rec["size"]
    if total > limits.max_total_bytes or len(files) + 2 > limits.max_members:
        raise BundleError(f"{MANIFEST}: declares {len(files)} files of {total} bytes, over the "
                          "limits, refused")
    folders = {"/".join(rel.split("/")[:i]) for rel in files for i in range(1, rel.count("/") + 1)}
    clash = sorted(folders & set(files))  # unpacking would fail half-way on such a bundle
    if clash:
        raise BundleError(f"{MANIFEST}: {clash[0]!r} is both a file and a folder", kind="usage")
    wheel = data.get("shopserve_wheel")
    if not isinstance(wheel, str) or wheel not in files:  # pip installs it: never from outside
        raise BundleError(f"{MANIFEST}: 'shopserve_wheel' must name one of its files",
                          kind="usage")
    return data


def _read_exact(handle: IO[bytes], size: int, sink: IO[bytes] | None) -> str:
    digest = hashlib.sha256()
    left = size
    while left:
        chunk = handle.read(min(CHUNK, left))
        if not chunk:
            raise BundleError("archive ends inside a member: truncated")
        digest.update(chunk)
        if sink is not None:
            sink.write(chunk)
        left -= len(chunk)
    return digest.hexdigest()


@dataclass
class _Pass:
    """One streaming walk over an archive, optionally writing verified files below ``dest``."""

    path: Path
    limits: Limits
    dest: Path | None = None
    checked: Checked | None = None
    seen_files: set[str] = field(default_factory=set)

    def run(self) -> Checked:
        if not self.path.is_file():
            raise BundleError(f"{self.path}: no such file", kind="notfound")
        try:
            with tarfile.open(self.path, "r|gz") as tar:
                self._walk(tar)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise BundleError(f"{self.path}: truncated or not a bundle ({exc})") from exc
        if self.checked is None:
            raise BundleError(f"{self.path}: empty archive, no {MANIFEST}")
        missing = sorted(set(self.checked.manifest["files"]) - self.seen_files)
        self.checked.problems += [f"missing file {m}" for m in missing]
        return self.checked

    def _walk(self, tar: tarfile.TarFile) -> None:
        seen: set[str] = set()
        total, most = 0, self.limits.max_total_bytes + self.limits.max_manifest_bytes + (1 << 16)
        for member in tar:
            rel = check_member(member, seen, self.limits)
            total += member.size  # members the manifest does not list are read too
            if total > most:
                raise BundleError(f"members hold more than {most} bytes, over the limit, refused")
            handle = tar.extractfile(member)
            if handle is None:
                raise BundleError(f"member {member.name!r} has no data")
            if self.checked is None:
                self._first(rel, member, handle)
            elif rel == SIGNATURE and self.checked.signature is None and len(seen) == 2:
                raw = handle.read(min(member.size, 1 << 16))
                self.checked.signature = _parse_signature(raw)
                self._write(rel, raw)
            else:
                self._file(rel, member, handle)

    def _first(self, rel: str, member: tarfile.TarInfo, handle: IO[bytes]) -> None:
        if rel != MANIFEST:
            raise BundleError(f"the first member must be {ROOT}/{MANIFEST}, not {member.name!r}")
        if member.size > self.limits.max_manifest_bytes:
            raise BundleError(f"{MANIFEST} has {member.size} bytes, over the limit, refused")
        raw = handle.read(member.size)
        self.checked = Checked(parse_manifest(raw, self.limits), raw)
        self._write(rel, raw)

    def _file(self, rel: str, member: tarfile.TarInfo, handle: IO[bytes]) -> None:
        assert self.checked is not None
        record = self.checked.manifest["files"].get(rel)
        if record is None:
            self.checked.problems.append(f"extra file {rel} (not in the manifest)")
            _read_exact(handle, member.size, None)
            return
        self.seen_files.add(rel)
        if member.size != record["size"]:
            self.checked.problems.append(
                f"changed file {rel} ({member.size} bytes, manifest says {record['size']})")
            _read_exact(handle, member.size, None)
            return
        sink = None if self.dest is None else _open_new(self.dest / rel)
        try:
            got = _read_exact(handle, member.size, sink)
        finally:
            if sink is not None:
                sink.close()
        if got != record["sha256"]:
            self.checked.problems.append(f"changed file {rel} (sha256 does not match)")

    def _write(self, rel: str, raw: bytes) -> None:
        if self.dest is not None:
            with _open_new(self.dest / rel) as sink:
                sink.write(raw)


def _open_new(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "xb")


def _parse_signature(raw: bytes) -> dict[str, Any]:
    try:
        sig = json.loads(raw.decode("utf-8"))
        bytes.fromhex(sig["public_key"])
        bytes.fromhex(sig["signature"])
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{SIGNATURE} is not a valid signature record ({exc})") from exc
    if sig.get("algorithm") != "ed25519":
        raise BundleError(f"{SIGNATURE}: unsupported algorithm {sig.get('algorithm')!r}")
    return dict(sig)


def check_signature(checked: Checked, trusted_key: bytes | None) -> str | None:
    """Check a present signature (and that it is by ``trusted_key`` when one is given).

    Returns the signing key in hex, or ``None`` for an unsigned bundle.
    """
    sig = checked.signature
    if sig is None:
        if trusted_key is not None:
            raise BundleError("bundle is not signed, but a trusted key was required")
        return None
    public = bytes.fromhex(sig["public_key"])
    if not verify_ed25519(public, checked.manifest_bytes, bytes.fromhex(sig["signature"])):
        raise BundleError(f"{SIGNATURE}: the ed25519 signature does not match {MANIFEST}")
    if trusted_key is not None and public != trusted_key:
        raise BundleError(f"bundle is signed by key {public.hex()[:16]}…, not by the trusted key")
    return public.hex()


def verify_archive(path: Path, limits: Limits | None = None,
                   trusted_key: bytes | None = None) -> Checked:
    """Read the whole archive without writing anything; raise naming every problem found."""
    checked = _Pass(Path(path), limits or Limits()).run()
    if checked.problems:
        raise BundleError(f"{path}: " + "; ".join(checked.problems))
    check_signature(checked, trusted_key)
    return checked


def unpack_archive(path: Path, dest: Path, limits: Limits | None = None,
                   trusted_key: bytes | None = None) -> Checked:
    """Verify ``path`` fully, then unpack it to the new folder ``dest`` (all or nothing)."""
    verify_archive(path, limits, trusted_key)
    if dest.exists():
        raise BundleError(f"{dest} already exists; install into a new prefix", kind="usage")
    staging = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.partial")
    try:
        checked = _Pass(Path(path), limits or Limits(), dest=staging).run()
        if checked.problems:  # the file changed between the two passes
            raise BundleError(f"{path}: " + "; ".join(checked.problems))
        check_signature(checked, trusted_key)
        os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return checked


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_directory(folder: Path, limits: Limits | None = None,
                     trusted_key: bytes | None = None) -> Checked:
    """Check an unpacked bundle folder: every file in the manifest, and no other file."""
    limits = limits or Limits()
    raw = (folder / MANIFEST).read_bytes()
    checked = Checked(parse_manifest(raw, limits), raw)
    if (folder / SIGNATURE).is_file():
        checked.signature = _parse_signature((folder / SIGNATURE).read_bytes())
    files = checked.manifest["files"]
    present = set(_walk_files(folder, checked.problems)) - {MANIFEST, SIGNATURE}
    for rel in sorted(present - set(files)):
        checked.problems.append(f"extra file {rel} (not in the manifest)")
    for rel, record in sorted(files.items()):
        if rel not in present:
            checked.problems.append(f"missing file {rel}")
        elif (folder / rel).stat().st_size != record["size"]:
            checked.problems.append(f"changed file {rel} (size does not match)")
        elif _hash_file(folder / rel) != record["sha256"]:
            checked.problems.append(f"changed file {rel} (sha256 does not match)")
    if checked.problems:
        raise BundleError(f"{folder}: " + "; ".join(checked.problems))
    check_signature(checked, trusted_key)
    return checked


def _walk_files(folder: Path, problems: list[str]) -> Iterator[str]:
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if "__pycache__" in path.parts:
            continue
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            problems.append(f"link or special file {rel}, refused")
        elif path.is_file():
            yield rel


def copy_directory(folder: Path, dest: Path, checked: Checked) -> None:
    """Copy the verified files of an unpacked bundle to the new folder ``dest``."""
    staging = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.partial")
    try:
        for rel in [MANIFEST, SIGNATURE, *checked.manifest["files"]]:
            if (folder / rel).is_file():
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(folder / rel, staging / rel)
        os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ed25519 verification after RFC 8032 section 6 (a signature is checked once per install,
# so plain integer arithmetic is fast enough and keeps this file free of dependencies).
_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
Point = tuple[int, int, int, int]


def _recover_x(y: int, sign: int) -> int | None:
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P)
    if x2 % _P == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    return _P - x if (x & 1) != sign else x


def _add(p: Point, q: Point) -> Point:
    a = (p[1] - p[0]) * (q[1] - q[0]) % _P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _P
    c = 2 * p[3] * q[3] * _D % _P
    d = 2 * p[2] * q[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s: int, p: Point) -> Point:
    q: Point = (0, 1, 1, 0)
    while s:
        if s & 1:
            q = _add(q, p)
        p = _add(p, p)
        s >>= 1
    return q


def _decompress(raw: bytes) -> Point | None:
    y = int.from_bytes(raw, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    x = _recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % _P)


_GY = 4 * pow(5, _P - 2, _P) % _P
_G: Point = (_recover_x(_GY, 0) or 0, _GY, 1, (_recover_x(_GY, 0) or 0) * _GY % _P)


def verify_ed25519(public: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid ed25519 signature of ``message`` by ``public``."""
    if len(public) != 32 or len(signature) != 64:
        return False
    a, r = _decompress(public), _decompress(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= _L:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little")
    left, right = _mul(s, _G), _add(r, _mul(h % _L, a))
    return (left[0] * right[2] - right[0] * left[2]) % _P == 0 and (
        left[1] * right[2] - right[1] * left[2]
    ) % _P == 0


# Installing: a venv from the bundled wheels only, then the models into a registry.
def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               PYTHONNOUSERSITE="1")
    return env


def _run(args: list[str], what: str, env: dict[str, str]) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        raise BundleError(f"{what} failed (exit {proc.returncode}):\n" + "\n".join(tail),
                          kind="usage")
    return proc.stdout


def check_python(manifest: dict[str, Any]) -> None:
    """Refuse a Python whose version differs from the one the wheels were chosen for."""
    have = f"{sys.version_info.major}.{sys.version_info.minor}"
    if manifest.get("python") != have:
        raise BundleError(f"bundle is built for Python {manifest.get('python')}, this is "
                          f"Python {have} ({sys.executable})", kind="usage")


def install_unpacked(bundle: Path, prefix: Path, manifest: dict[str, Any]) -> str:
    """Create ``prefix/venv`` from ``bundle/wheels``, import the models; returns serve command."""
    env = _clean_env()
    venv, home = prefix / "venv", prefix / "home"
    _run([sys.executable, "-m", "venv", str(venv)], "creating the virtual environment", env)
    python = str(venv / "bin" / "python")
    wheel = str(bundle / manifest["shopserve_wheel"])
    _run([python, "-m", "pip", "install", "--no-index", "--only-binary=:all:",
          "--find-links", str(bundle / "wheels"), wheel], "installing the bundled wheels", env)
    out = _run([python, "-m", "shopserve.bundle.imports", "--bundle", str(bundle),
                "--home", str(home)], "importing the models", env)
    return out.strip()


def install(source: Path, prefix: Path, trusted_key: bytes | None = None,
            limits: Limits | None = None) -> str:
    """Install a bundle file (or an unpacked bundle folder) into the new ``prefix``."""
    prefix = prefix.absolute()
    if prefix.exists() and any(prefix.iterdir()):
        raise BundleError(f"{prefix} is not empty; install into a new prefix", kind="usage")
    if source.is_dir():
        checked = verify_directory(source, limits, trusted_key)
    else:
        checked = verify_archive(source, limits, trusted_key)
    check_python(checked.manifest)
    created = not prefix.exists()
    prefix.mkdir(parents=True, exist_ok=True)
    try:
        if source.is_dir():
            copy_directory(source, prefix / "bundle", checked)
        else:
            checked = unpack_archive(source, prefix / "bundle", limits, trusted_key)
        return install_unpacked(prefix / "bundle", prefix, checked.manifest)
    except BaseException:
        for child in ("bundle", "venv", "home"):
            shutil.rmtree(prefix / child, ignore_errors=True)
        if created:
            shutil.rmtree(prefix, ignore_errors=True)
        raise


def main(argv: list[str] | None = None) -> int:
    """``python3 install.py --prefix DIR [--bundle FILE] [--trusted-key KEY.pub]``."""
    parser = argparse.ArgumentParser(description="Install a shopserve bundle offline.")
    parser.add_argument("--prefix", type=Path, required=True, help="new folder to install into")
    parser.add_argument("--bundle", type=Path, default=None,
                        help="bundle .tar.gz (default: the folder this script is in)")
    parser.add_argument("--trusted-key", type=Path, default=None,
                        help="public key file the bundle must be signed with")
    args = parser.parse_args(argv)
    source = args.bundle or Path(__file__).resolve().parent
    try:
        key = None if args.trusted_key is None else read_public_key(args.trusted_key)
        print(install(source, args.prefix, key))
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return {"usage": 2, "notfound": 3}.get(exc.kind, 5)
    return 0


def read_public_key(path: Path) -> bytes:
    """A public key file as written by ``shopserve bundle keygen``: 64 hex characters."""
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").split()[-1])
    except (OSError, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not a shopserve public key ({exc})", kind="usage") from exc
    if len(key) != 32:
        raise BundleError(f"{path}: an ed25519 public key has 32 bytes, not {len(key)}",
                          kind="usage")
    return key


if __name__ == "__main__":
    sys.exit(main())
