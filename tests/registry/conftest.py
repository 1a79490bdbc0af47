"""Shared helpers for registry tests: a fresh home and small artifact files."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopserve.registry import Registry


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def registry(home: Path) -> Registry:
    return Registry.open(home)


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07" + bytes(range(256)) * 40)
    return path
