"""Training straight into a real registry, and loading the pipeline back from it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shopserve.data import DemoShopSpec, generate_demo_shop
from shopserve.errors import UsageError
from shopserve.models import RankPipeline, evaluate, load_pipeline, train_and_register
from shopserve.registry import Registry
from shopserve.types import ModelKind


def test_train_and_register_round_trips_through_the_registry(tmp_path: Path) -> None:
    shop = generate_demo_shop(DemoShopSpec.small())
    reg = Registry.open(tmp_path / "home")
    mv = train_and_register(ModelKind.RANK, shop, reg, "ctr")
    assert mv.ref == "ctr@1"
    assert set(mv.files) == {"model.onnx", "eval.parquet"}
    assert mv.data_hash and mv.data_hash.startswith("sha256:")
    loaded = reg.load("ctr@1")
    pipe = load_pipeline(loaded.meta.kind, loaded.meta.config, loaded.files)
    again = evaluate(pipe, loaded.files["eval.parquet"])
    assert again["auc"] == pytest.approx(mv.metrics["auc"])
    assert isinstance(pipe, RankPipeline)
    scores = pipe.rank(shop.clicks.slice(0, 4).to_pylist())
    assert scores.shape == (4,) and np.isfinite(scores).all()


def test_generic_kind_has_no_reference_model(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="'generic'"):
        train_and_register(ModelKind.GENERIC, None, Registry.open(tmp_path), "x")
    with pytest.raises(UsageError, match="'generic'"):
        load_pipeline(ModelKind.GENERIC, {}, {})
