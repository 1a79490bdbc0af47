"""Fixtures of the batch tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from batch_helpers import make_model


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return make_model(tmp_path / "model.onnx")
