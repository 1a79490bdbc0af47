"""Property-based fuzzing of bundle archives: mutated manifests, sizes and checksums that lie,
hostile member names and kinds, cut streams. ``bundle verify``, the unpack step and the
standalone ``install.py`` logic either accept the bundle whole or refuse it with nothing written."""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from shopserve.bundle import Limits, verify_bundle
from shopserve.bundle import install_script as script
from shopserve.errors import ShopserveError

ROOT = "shopserve-bundle"
LIMITS = Limits(max_members=12, max_member_bytes=4096, max_total_bytes=8192,
                max_manifest_bytes=8192)
FILES = {
    "install.py": b"print('install')\n",
    "models/search-1.tar.gz": b"model-v1",
    "wheels/shopserve-0.1.0-py3-none-any.whl": b"shopserve wheel",
    "wheels/numpy-2.0.0-cp311-cp311-manylinux_2_17_x86_64.whl": b"2.0.0",
}


def _record(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


MANIFEST: dict[str, Any] = {
    "format": "shopserve-bundle/1", "created_at": "2026-11-29T00:00:00Z",
    "shopserve_version": "0.1.0", "platform": "manylinux_2_28_x86_64",
    "platforms": ["manylinux_2_28_x86_64"], "python": "2.7",  # install.py stops before a venv
    "models": [{"name": "search", "version": 1, "requested": ["search@production"],
                "aliases": ["production"], "file": "models/search-1.tar.gz",
                "artifacts": {"model.onnx": _record(b"model-v1")}}],
    "deployment": None, "shopserve_wheel": "wheels/shopserve-0.1.0-py3-none-any.whl",
    "wheels": [], "files": {rel: _record(data) for rel, data in FILES.items()},
}
NAMES = st.sampled_from([
    f"{ROOT}/manifest.json", f"{ROOT}/manifest.sig", f"{ROOT}/install.py", f"{ROOT}/../x",
    "/abs", f"{ROOT}/a/../b", f"{ROOT}//b", f"{ROOT}/./b", f"{ROOT}\\..\\x", "C:/x", "other/x",
    ROOT, f"{ROOT}/", f"{ROOT}/models", f"{ROOT}/models/search-1.tar.gz/x", "x"])
KINDS = st.sampled_from([tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
                         tarfile.DIRTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE, tarfile.CONTTYPE,
                         tarfile.GNUTYPE_SPARSE])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2, 2**70), st.text(max_size=8),
                    st.just("0" * 64), st.floats(allow_nan=True))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8)
FILE_NAMES = st.sampled_from(["", ".", "..", "a/../b", "/abs", "manifest.json", "manifest.sig",
                              "models", "models/search-1.tar.gz/x", "wheels\\x", "x"])


def _mutate_manifest(draw: st.DrawFn, manifest: dict[str, Any]) -> None:
    what = draw(st.integers(0, 5))
    files = manifest.get("files")
    rel = draw(st.sampled_from(sorted(files))) if isinstance(files, dict) and files else None
    if rel is not None and not isinstance(files[rel], dict):
        files[rel] = {}
    if what == 0:
        manifest[draw(st.sampled_from(sorted(MANIFEST)))] = draw(VALUES)
    elif what == 1 and rel is not None:  # a size that lies, a huge one, or not a number
        files[rel]["size"] = draw(st.one_of(st.integers(-1, 64), st.just(2**62),
                                            st.just(True), VALUES))
    elif what == 2 and rel is not None:
        files[rel]["sha256"] = draw(st.one_of(st.just("0" * 64), st.text(max_size=70), VALUES))
    elif what == 3 and rel is not None:  # a hostile name for a listed file
        files[draw(FILE_NAMES)] = files.pop(rel)
    elif what == 4:
        manifest.pop(draw(st.sampled_from(sorted(manifest))))
    else:
        manifest["files"] = draw(VALUES)


@st.composite
def bundles(draw: st.DrawFn) -> bytes:
    """Mostly well-formed bundles with a few things wrong; sometimes raw bytes."""
    if draw(st.integers(0, 12)) == 0:
        return draw(st.binary(max_size=300))
    manifest = copy.deepcopy(MANIFEST)
    files = dict(FILES)
    for _ in range(draw(st.integers(0, 2))):
        _mutate_manifest(draw, manifest)
    raw = json.dumps(manifest).encode() if draw(st.integers(0, 9)) else draw(st.binary(max_size=40))
    members = [(f"{ROOT}/manifest.json", tarfile.REGTYPE, raw, len(raw))]
    members += [(f"{ROOT}/{rel}", tarfile.REGTYPE, data, len(data)) for rel, data in files.items()]
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(members) - 1))
        name, kind, data, size = members[i]
        what = draw(st.integers(0, 4))
        if what == 0:
            members[i] = (draw(NAMES), kind, data, size)
        elif what == 1:
            members[i] = (name, draw(KINDS), data, size)
        elif what == 2:
            data = draw(st.binary(max_size=40))
            members[i] = (name, kind, data, len(data))
        elif what == 3:  # a header whose size lies about the data that follows
            members[i] = (name, kind, data, draw(st.sampled_from([0, 1, 2**33, 2**40])))
        else:
            members.insert(draw(st.integers(0, len(members))), members[i])
    stream = b"".join(_member(*m) for m in members) + b"\0" * 1024
    if draw(st.integers(0, 5)) == 0:
        stream = stream[: draw(st.integers(0, len(stream)))]
    return gzip.compress(stream)


def _member(name: str, kind: bytes, data: bytes, size: int) -> bytes:
    """One tar header and its padded data, written by hand so that the header may lie."""
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    info.linkname = "/etc/passwd" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
    body = data[:size] if size < 2**30 else data
    return info.tobuf(tarfile.PAX_FORMAT) + body + b"\0" * (-len(body) % tarfile.BLOCKSIZE)


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@settings(max_examples=500, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(bundles())
def test_any_bundle_is_verified_and_unpacked_whole_or_refused_with_nothing_written(
        data: bytes) -> None:
    root = Path(tempfile.mkdtemp(prefix="shopserve-fuzz-"))
    try:
        path = root / "in.tar.gz"
        path.write_bytes(data)
        try:
            report = verify_bundle(path, limits=LIMITS)
        except ShopserveError as exc:
            assert str(exc).strip()
            verified = False
        else:
            assert set(report.manifest.files) == set(FILES)
            verified = True
        event("verified" if verified else "refused")
        try:
            checked = script.unpack_archive(path, root / "dest", LIMITS)
        except script.BundleError as exc:
            assert str(exc).strip()
            assert not verified
            assert _tree(root) == ["in.tar.gz"]
        else:
            rels = set(checked.manifest["files"])
            assert set(_tree(root / "dest")) >= rels
            for rel, record in checked.manifest["files"].items():
                assert _record((root / "dest" / rel).read_bytes()) == record
        with pytest.raises(script.BundleError):  # install.py: refused before it makes a venv
            script.install(path, root / "prefix", None, LIMITS)
        assert not (root / "prefix").exists()
    finally:
        shutil.rmtree(root)


def _bundle(path: Path, members: list[tuple[str, bytes, int]],
            manifest: dict[str, Any] | None = None) -> Path:
    raw = json.dumps(manifest or MANIFEST).encode()
    head = _member(f"{ROOT}/manifest.json", tarfile.REGTYPE, raw, len(raw))
    body = b"".join(_member(n, tarfile.REGTYPE, d, s) for n, d, s in members)
    path.write_bytes(gzip.compress(head + body + b"\0" * 1024))
    return path


def _files() -> list[tuple[str, bytes, int]]:
    return [(f"{ROOT}/{rel}", data, len(data)) for rel, data in FILES.items()]


def _refused(path: Path, says: str, limits: Limits = LIMITS) -> None:
    with pytest.raises(ShopserveError, match=says):
        verify_bundle(path, limits=limits)
    with pytest.raises(script.BundleError, match=says):
        script.unpack_archive(path, path.with_name("dest"), limits)
    assert not path.with_name("dest").exists()


def test_a_member_declaring_a_huge_size_is_refused_before_reading(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "b.tar.gz",
                     [*_files(), (f"{ROOT}/wheels/big.whl", b"", 2**40)])
    _refused(bundle, "has 1099511627776 bytes, over the limit", Limits())


def test_too_many_members_are_refused(tmp_path: Path) -> None:
    extra = [(f"{ROOT}/extra-{i}", b"x", 1) for i in range(LIMITS.max_members)]
    _refused(_bundle(tmp_path / "b.tar.gz", [*_files(), *extra]), "more than 12 members")


def test_members_holding_more_than_the_total_limit_are_refused(tmp_path: Path) -> None:
    # Each member is under the per-member limit; together they are far over the total one.
    limits = Limits(max_members=100, max_member_bytes=4096, max_total_bytes=8192,
                    max_manifest_bytes=8192)
    extra = [(f"{ROOT}/extra-{i}", bytes(4000), 4000) for i in range(25)]
    _refused(_bundle(tmp_path / "b.tar.gz", [*_files(), *extra]), "members hold more than",
             limits)


def test_a_manifest_declaring_more_than_the_limits_is_refused(tmp_path: Path) -> None:
    manifest = copy.deepcopy(MANIFEST)
    manifest["files"]["install.py"]["size"] = LIMITS.max_total_bytes + 1
    _refused(_bundle(tmp_path / "b.tar.gz", _files(), manifest), "over the limits")


def test_a_file_that_is_also_a_folder_is_refused(tmp_path: Path) -> None:
    manifest = copy.deepcopy(MANIFEST)
    manifest["files"]["models"] = _record(b"m")
    _refused(_bundle(tmp_path / "b.tar.gz", [*_files(), (f"{ROOT}/models", b"m", 1)], manifest),
             "'models' is both a file and a folder")


@pytest.mark.parametrize("wheel", [None, 3, ["x"], "../../elsewhere.whl", "wheels/missing.whl"])
def test_the_shopserve_wheel_must_be_a_file_of_the_bundle(tmp_path: Path, wheel: Any) -> None:
    manifest = copy.deepcopy(MANIFEST)
    manifest["shopserve_wheel"] = wheel
    _refused(_bundle(tmp_path / "b.tar.gz", _files(), manifest),
             "'shopserve_wheel' must name one of its files")
