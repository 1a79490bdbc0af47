"""Every load re-verifies artifacts; ``check`` and ``gc`` see what is on disk."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from shopserve.errors import IntegrityError, UsageError
from shopserve.registry import Registry
from shopserve.types import ModelKind


def _object(registry: Registry, ref: str, artifact: str) -> Path:
    path = registry.store.path(registry.get(ref).files[artifact].sha256)
    path.chmod(0o644)  # objects are stored read-only; tampering starts by undoing that
    return path


def _two_files(registry: Registry, tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"graph" * 500)
    (tmp_path / "b").write_bytes(b"vocab" * 300)
    registry.register(
        "search", {"encoder.onnx": tmp_path / "a", "vocab.json": tmp_path / "b"}, ModelKind.SEARCH
    )


def test_flipped_byte_is_refused_naming_the_file(registry: Registry, tmp_path: Path) -> None:
    _two_files(registry, tmp_path)
    obj = _object(registry, "search@1", "vocab.json")
    data = bytearray(obj.read_bytes())
    data[100] ^= 0xFF
    obj.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"search@1 artifact 'vocab\.json'.*sha256 mismatch"):
        registry.load("search@1")
    problems = registry.check()
    assert len(problems) == 1 and "vocab.json" in problems[0]


def test_truncated_object_is_refused(registry: Registry, tmp_path: Path) -> None:
    _two_files(registry, tmp_path)
    obj = _object(registry, "search@1", "encoder.onnx")
    with obj.open("r+b") as handle:
        handle.truncate(10)
    with pytest.raises(IntegrityError, match=r"'encoder\.onnx'.*10 bytes, expected 2500"):
        registry.load("search")


def test_missing_object_is_refused(registry: Registry, tmp_path: Path) -> None:
    _two_files(registry, tmp_path)
    _object(registry, "search@1", "encoder.onnx").unlink()
    with pytest.raises(IntegrityError, match=r"'encoder\.onnx'.*missing"):
        registry.load("search@1")
    assert any("encoder.onnx" in p for p in registry.check())


def test_registering_again_heals_a_damaged_object(registry: Registry, tmp_path: Path) -> None:
    _two_files(registry, tmp_path)
    obj = _object(registry, "search@1", "encoder.onnx")
    obj.write_bytes(b"junk")
    registry.register("search", {"encoder.onnx": tmp_path / "a"}, ModelKind.SEARCH)
    assert registry.load("search@1").read_bytes("encoder.onnx") == (tmp_path / "a").read_bytes()


def test_healthy_registry_checks_clean_and_uses_wal(registry: Registry, tmp_path: Path) -> None:
    _two_files(registry, tmp_path)
    assert registry.check() == []
    with sqlite3.connect(registry.db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_gc_frees_unreferenced_objects_and_stale_temps(registry: Registry, tmp_path: Path) -> None:
    _two_files(registry, tmp_path)
    (tmp_path / "c").write_bytes(b"other" * 10)
    registry.register(
        "search", {"encoder.onnx": tmp_path / "c", "vocab.json": tmp_path / "b"}, ModelKind.SEARCH
    )
    stale = registry.store.tmp / "123-crashed.tmp"
    stale.write_bytes(b"x" * 7)
    old = time.time() - 7200
    os.utime(stale, (old, old))
    fresh = registry.store.tmp / "456-writing.tmp"
    fresh.write_bytes(b"y")
    first = registry.gc()  # every object is still referenced; only the stale temp goes
    assert (first.objects_removed, first.temp_files_removed, first.bytes_freed) == (0, 1, 7)
    assert not stale.exists() and fresh.exists()
    registry.delete("search@1")
    report = registry.gc()
    # encoder 'a' only belonged to v1; vocab 'b' is shared with v2 and stays
    assert (report.objects_removed, report.temp_files_removed) == (1, 0)
    assert report.bytes_freed == 2500
    assert not stale.exists() and fresh.exists()
    assert registry.load("search@2").read_bytes("vocab.json") == (tmp_path / "b").read_bytes()
    assert registry.check() == []


def test_unusable_home_or_database_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(UsageError, match="cannot create the registry home"):
        Registry.open(tmp_path / "file")
    home = tmp_path / "home"
    home.mkdir()
    (home / "registry.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(IntegrityError, match="not a usable registry database"):
        Registry.open(home)


def test_check_reports_a_damaged_database(registry: Registry, tmp_path: Path) -> None:
    _two_files(registry, tmp_path)
    with sqlite3.connect(registry.db_path) as conn:
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("DELETE FROM versions WHERE version = 1")  # leaves its file rows behind
    problems = registry.check()
    assert problems and all(p.startswith("database:") for p in problems)
    assert "files" in problems[0]
