"""Registering, resolving, promoting, rolling back and deleting versions in one process."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopserve.errors import AliasInUseError, ConflictError, NotFoundError, UsageError
from shopserve.registry import Registry, parse_ref
from shopserve.types import ModelKind, Optimization, VersionStatus


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def test_register_get_and_load_round_trip(registry: Registry, artifact: Path) -> None:
    mv = registry.register(
        "ctr",
        {"model.onnx": artifact},
        ModelKind.RANK,
        metrics={"auc": 0.78},
        config={"graph": "model.onnx"},
        data_hash="sha256:abc",
    )
    assert (mv.name, mv.version, mv.ref) == ("ctr", 1, "ctr@1")
    assert mv.files["model.onnx"].size == artifact.stat().st_size
    assert registry.get("ctr") == registry.get("ctr@latest") == registry.get("ctr@1")
    loaded = registry.load("ctr@1")
    assert loaded.meta == mv
    assert loaded.read_bytes("model.onnx") == artifact.read_bytes()
    assert loaded.files["model.onnx"].read_bytes() == artifact.read_bytes()
    with pytest.raises(NotFoundError, match=r"no artifact 'vocab\.json'"):
        loaded.read_bytes("vocab.json")


def test_versions_count_up_and_latest_skips_rejected(registry: Registry, tmp_path: Path) -> None:
    a = _write(tmp_path, "a", b"a")
    registry.register("ctr", {"m": a}, ModelKind.RANK)
    child = registry.register(
        "ctr",
        {"m": _write(tmp_path, "b", b"b")},
        ModelKind.RANK,
        parent="ctr@latest",
        optimization=Optimization(recipe="int8"),
        status=VersionStatus.REJECTED,
        reason="auc dropped 0.05 > 0.01",
    )
    assert child.version == 2 and child.parent == "ctr@1"
    assert registry.get("ctr@latest").version == 1
    with pytest.raises(ConflictError, match="auc dropped"):
        registry.promote("ctr@2", "production")
    registry.delete("ctr@2")
    assert registry.register("ctr", {"m": a}, ModelKind.RANK).version == 3  # never reused


def test_alias_rollback_walks_back_through_holders(registry: Registry, tmp_path: Path) -> None:
    for i in range(3):
        registry.register("ctr", {"m": _write(tmp_path, f"v{i}", bytes([i]))}, ModelKind.RANK)
    for v in (1, 2, 3):
        registry.promote(f"ctr@{v}", "production")
    assert registry.get("ctr@production").version == 3
    assert registry.rollback("ctr", "production").version == 2
    assert registry.get("ctr@production").version == 2
    assert registry.rollback("ctr", "production").version == 1
    with pytest.raises(ConflictError, match="no previous holder"):
        registry.rollback("ctr", "production")
    assert registry.get("ctr@production").version == 1


def test_rollback_skips_deleted_holders(registry: Registry, tmp_path: Path) -> None:
    for i in range(3):
        registry.register("ctr", {"m": _write(tmp_path, f"v{i}", bytes([i]))}, ModelKind.RANK)
    for v in (1, 2, 3):
        registry.promote(f"ctr@{v}", "staging")
    registry.promote("ctr@3", "production")
    registry.promote("ctr@1", "production")
    registry.delete("ctr@2")  # only staging's history mentions it
    assert registry.rollback("ctr", "staging").version == 1
    assert registry.rollback("ctr", "production").version == 3


def test_delete_refused_while_alias_points_at_it(registry: Registry, artifact: Path) -> None:
    registry.register("ctr", {"model.onnx": artifact}, ModelKind.RANK)
    registry.promote("ctr@1", "canary")
    with pytest.raises(AliasInUseError, match="ctr@canary"):
        registry.delete("ctr@1")
    assert registry.get("ctr@1").aliases == ("canary",)


def test_bad_input_is_named(registry: Registry, artifact: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="invalid model name 'Bad Name'"):
        registry.register("Bad Name", {"m": artifact}, ModelKind.RANK)
    with pytest.raises(UsageError, match=r"invalid artifact name '\.\./x'"):
        registry.register("ctr", {"../x": artifact}, ModelKind.RANK)
    with pytest.raises(NotFoundError, match=r"missing\.onnx"):
        registry.register("ctr", {"m": tmp_path / "missing.onnx"}, ModelKind.RANK)
    with pytest.raises(UsageError, match="metric 'auc'"):
        registry.register("ctr", {"m": artifact}, ModelKind.RANK, metrics={"auc": float("nan")})
    with pytest.raises(UsageError, match="invalid alias 'latest'"):
        registry.promote("ctr@1", "latest")
    assert registry.list_models() == []
    assert list(registry.store.tmp.iterdir()) == []
    registry.register("ctr", {"m": artifact}, ModelKind.RANK)
    with pytest.raises(ConflictError, match="holds rank models"):
        registry.register("ctr", {"m": artifact}, ModelKind.SEARCH)
    with pytest.raises(NotFoundError, match="no alias 'production'"):
        registry.get("ctr@production")
    with pytest.raises(NotFoundError, match="no version 9"):
        registry.load("ctr@9")


def test_parse_ref_forms() -> None:
    assert parse_ref("ctr").version is None and parse_ref("ctr").alias is None
    assert parse_ref("ctr@3").version == 3
    assert parse_ref("ctr@production").alias == "production"
    assert str(parse_ref("ctr@latest")) == "ctr@latest"
    for bad in ("", "ctr@", "ctr@0", "CTR", "ctr@a/b"):
        with pytest.raises(UsageError):
            parse_ref(bad)


def test_update_metrics_diff_list(registry: Registry, tmp_path: Path) -> None:
    registry.register(
        "ctr",
        {"m": _write(tmp_path, "a", b"a")},
        ModelKind.RANK,
        metrics={"auc": 0.7},
        config={"k": 1},
    )
    registry.register(
        "ctr",
        {"m": _write(tmp_path, "b", b"b"), "v": _write(tmp_path, "c", b"c")},
        ModelKind.RANK,
        metrics={"auc": 0.75},
        config={"k": 2},
    )
    updated = registry.update_metrics("ctr@1", {"logloss": 0.4}, data_hash="sha256:d")
    assert updated.metrics == {"auc": 0.7, "logloss": 0.4} and updated.data_hash == "sha256:d"
    diff = registry.diff("ctr@1", "ctr@2")
    assert [(m.name, m.a, m.b) for m in diff.metrics] == [
        ("auc", 0.7, 0.75),
        ("logloss", 0.4, None),
    ]
    assert diff.metrics[0].delta == pytest.approx(0.05)
    assert (diff.files_added, diff.files_changed, diff.config_changed) == (("v",), ("m",), ("k",))
    assert not diff.same_data
    [summary] = registry.list_models()
    assert (summary.name, summary.versions, summary.latest) == ("ctr", 2, 2)
    assert [v.version for v in registry.list_versions("ctr")] == [1, 2]


def test_one_registry_shared_by_threads(registry: Registry, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def work(t: int) -> list[int]:
        out = []
        for i in range(5):
            art = _write(tmp_path, f"t{t}-{i}", f"{t}:{i}".encode())
            out.append(registry.register("ctr", {"m": art}, ModelKind.RANK).version)
            registry.promote(f"ctr@{out[-1]}", f"thread{t}")
            assert registry.load(f"ctr@thread{t}").read_bytes("m") == f"{t}:{i}".encode()
        return out

    with ThreadPoolExecutor(4) as pool:
        versions = sorted(v for vs in pool.map(work, range(4)) for v in vs)
    assert versions == list(range(1, 21))
