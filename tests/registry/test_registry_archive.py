"""Export/import of one version as a file, and hostile archives refused with nothing written."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from shopserve.errors import IntegrityError, NotFoundError, ShopserveError, UsageError
from shopserve.registry import ImportLimits, Registry
from shopserve.types import ModelKind, ModelSignature, TensorSpec

Member = tuple[tarfile.TarInfo, bytes | None]


@pytest.fixture
def exported(registry: Registry, tmp_path: Path) -> Path:
    (tmp_path / "m").write_bytes(b"\x01" * 3000)
    (tmp_path / "v").write_bytes(b'{"hello": 1}')
    registry.register("ctr", {"m": tmp_path / "m"}, ModelKind.RANK)
    registry.register(
        "ctr",
        {"model.onnx": tmp_path / "m", "tok/vocab.json": tmp_path / "v"},
        ModelKind.RANK,
        metrics={"auc": 0.8},
        data_hash="sha256:feed",
        parent="ctr@1",
        config={"graph": "m"},
        signature=ModelSignature(
            inputs=(TensorSpec(name="x", dtype="float32", shape=(-1, 3)),),
            outputs=(TensorSpec(name="y", dtype="float32", shape=(-1,)),),
        ),
    )
    registry.promote("ctr@2", "production")
    return registry.export_version("ctr@production", tmp_path / "ctr-2.tar.gz")


def test_round_trip_into_a_second_home(registry: Registry, exported: Path, tmp_path: Path) -> None:
    other = Registry.open(tmp_path / "other-home")
    imported = other.import_version(exported)
    source = registry.get("ctr@2")
    assert imported.ref == "ctr@1" and imported.origin == "ctr@2" and imported.aliases == ()
    assert imported.files == source.files
    for field in ("kind", "metrics", "data_hash", "parent", "config", "signature", "created_at"):
        assert getattr(imported, field) == getattr(source, field), field
    loaded = other.load("ctr@1")
    for art in source.files:
        assert loaded.read_bytes(art) == registry.load("ctr@2").read_bytes(art)
    again = other.import_version(exported)  # same name: next number, same origin
    assert (again.ref, again.origin) == ("ctr@2", "ctr@2")
    assert other.import_version(exported, name="ctr-copy").ref == "ctr-copy@1"
    assert other.check() == []


def _manifest(exported: Path) -> bytes:
    with tarfile.open(exported, "r:gz") as tar:
        handle = tar.extractfile("manifest.json")
        assert handle is not None
        return handle.read()


def _member(name: str, data: bytes | None = b"", kind: bytes = tarfile.REGTYPE) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if data is not None and kind == tarfile.REGTYPE else 0
    return info, data


def _build(path: Path, members: list[Member]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data or b"") if info.size else None)
    return path


def _state(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if "registry.db" not in p.name)


def _many_files(manifest: bytes, count: int) -> bytes:
    data = json.loads(manifest)
    empty = {"sha256": hashlib.sha256(b"").hexdigest(), "size": 0}
    data["version"]["files"] = {f"x{i}": empty for i in range(count)}
    return json.dumps(data).encode()


def _hostile_cases(exported: Path, tmp_path: Path) -> dict[str, tuple[list[Member], str]]:
    man = _manifest(exported)
    body = b"\x01" * 3000
    vocab = b'{"hello": 1}'
    good = [_member("files/model.onnx", body), _member("files/tok/vocab.json", vocab)]
    link = _member("files/model.onnx", None, tarfile.SYMTYPE)
    link[0].linkname = "/etc/passwd"
    hard = _member("files/model.onnx", None, tarfile.LNKTYPE)
    hard[0].linkname = "manifest.json"
    evil = str(tmp_path / "evil.txt")
    return {
        "traversal": ([_member("manifest.json", man), _member("../../evil.txt", b"x")], r"'\.\.'"),
        "traversal-in-files": (
            [_member("manifest.json", man), _member("files/../../evil.txt", b"x")],
            r"'\.\.'",
        ),
        "absolute": ([_member("manifest.json", man), _member(evil, b"x")], "absolute path"),
        "symlink": ([_member("manifest.json", man), link], "is a link"),
        "hardlink": ([_member("manifest.json", man), hard], "is a link"),
        "device": (
            [_member("manifest.json", man), _member("files/model.onnx", None, tarfile.CHRTYPE)],
            "not a regular file",
        ),
        "fifo": (
            [_member("manifest.json", man), _member("files/model.onnx", None, tarfile.FIFOTYPE)],
            "not a regular file",
        ),
        "duplicate": ([_member("manifest.json", man), *good, good[0]], "appears twice"),
        "many": (
            [_member("manifest.json", _many_files(man, 1100))]
            + [_member(f"files/x{i}", b"") for i in range(1100)],
            "more than 1000 members",
        ),
        "manifest-last": ([*good, _member("manifest.json", man)], "first member must be"),
        "undeclared": (
            [_member("manifest.json", man), *good, _member("files/extra", b"1")],
            "not declared",
        ),
        "missing": ([_member("manifest.json", man), good[0]], r"tok/vocab\.json.* missing"),
        "tampered": (
            [_member("manifest.json", man), _member("files/model.onnx", b"\x02" * 3000), good[1]],
            "'model.onnx' does not match its manifest checksum",
        ),
        "resized": (
            [_member("manifest.json", man), _member("files/model.onnx", b"\x01" * 10), good[1]],
            "10 bytes in the archive, manifest says 3000",
        ),
        "bad-manifest": ([_member("manifest.json", b'{"format": "zip"}'), *good], "format"),
    }


CASES = [
    "traversal",
    "traversal-in-files",
    "absolute",
    "symlink",
    "hardlink",
    "device",
    "fifo",
    "duplicate",
    "many",
    "manifest-last",
    "undeclared",
    "missing",
    "tampered",
    "resized",
    "bad-manifest",
]


@pytest.mark.parametrize("case", CASES)
def test_hostile_archive_refused_with_nothing_written(
    registry: Registry, exported: Path, tmp_path: Path, case: str
) -> None:
    members, message = _hostile_cases(exported, tmp_path)[case]
    archive = _build(tmp_path / f"{case}.tar.gz", members)
    target = Registry.open(tmp_path / "target")
    target.register("ctr", {"m": tmp_path / "m"}, ModelKind.RANK)
    before = _state(target.home)
    with pytest.raises(ShopserveError, match=message) as info:
        target.import_version(archive)
    assert isinstance(info.value, UsageError | IntegrityError)
    assert _state(target.home) == before
    assert [v.ref for v in target.list_versions("ctr")] == ["ctr@1"]
    assert not (tmp_path / "evil.txt").exists() and not Path("/evil.txt").exists()


def test_size_limits_refuse_bombs(exported: Path, tmp_path: Path) -> None:
    target = Registry.open(tmp_path / "target")
    with pytest.raises(UsageError, match="over the limit of 1000"):
        target.import_version(exported, limits=ImportLimits(max_member_bytes=1000))
    with pytest.raises(UsageError, match="artifacts total 3012 bytes, over the limit"):
        target.import_version(exported, limits=ImportLimits(max_total_bytes=3000))
    assert target.list_models() == [] and _state(target.home) == ["objects", "tmp"]


def test_not_an_archive(tmp_path: Path, registry: Registry) -> None:
    (tmp_path / "junk.tar.gz").write_bytes(b"not gzip at all")
    with pytest.raises(IntegrityError, match="not a readable shopserve export"):
        registry.import_version(tmp_path / "junk.tar.gz")
    with pytest.raises(NotFoundError, match="no such file"):
        registry.import_version(tmp_path / "absent.tar.gz")
    _build(tmp_path / "empty.tar.gz", [])
    with pytest.raises(UsageError, match="empty archive"):
        registry.import_version(tmp_path / "empty.tar.gz")


def test_export_refuses_a_corrupted_store(registry: Registry, exported: Path) -> None:
    obj = registry.store.path(registry.get("ctr@2").files["tok/vocab.json"].sha256)
    obj.chmod(0o644)
    obj.write_bytes(b"{}")
    out = exported.with_name("again.tar.gz")
    with pytest.raises(IntegrityError, match=r"ctr@2 artifact 'tok/vocab\.json'"):
        registry.export_version("ctr@2", out)
    assert not out.exists() and [p.name for p in out.parent.glob(".again*")] == []
    assert json.loads(_manifest(exported))["version"]["name"] == "ctr"
