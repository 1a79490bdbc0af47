"""Fixtures for optimize: tiny MLP graphs, and a real CTR model trained on a small demo shop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.optimize.tiny import make_inputs, make_mlp

from shopserve.data import DemoShopSpec, generate_demo_shop
from shopserve.models import TrainedModel, train_ctr
from shopserve.optimize import OptimizeSettings, RecipeContext, SpeedSettings
from shopserve.optimize.calibration import Batch, split_batches
from shopserve.registry import Registry

FAST_SPEED = SpeedSettings(warmup=1, min_runs=2, seconds_per_batch=0.02)


@pytest.fixture
def mlp(tmp_path: Path) -> Path:
    return make_mlp(tmp_path / "mlp.onnx")


@pytest.fixture
def mlp_batches() -> list[Batch]:
    return split_batches({"x": make_inputs()}, 64)


@pytest.fixture
def ctx(tmp_path: Path, mlp_batches: list[Batch]) -> RecipeContext:
    return RecipeContext(work_dir=tmp_path / "work", calibration=lambda: mlp_batches)


@pytest.fixture(scope="session")
def trained_ctr(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    shop = generate_demo_shop(DemoShopSpec(seed=0, products=200, customers=50, queries=20,
                                           ctr_rows=3000))
    return train_ctr(shop, tmp_path_factory.mktemp("ctr"))


@pytest.fixture
def registry(tmp_path: Path, trained_ctr: TrainedModel) -> Registry:
    reg = Registry.open(tmp_path / "home")
    reg.register("ctr", files=dict(trained_ctr.files), kind=trained_ctr.kind,
                 signature=trained_ctr.signature, config=trained_ctr.config,
                 metrics=trained_ctr.metrics, data_hash=trained_ctr.data_hash)
    return reg


@pytest.fixture
def fast(tmp_path: Path) -> OptimizeSettings:
    return OptimizeSettings(speed=FAST_SPEED, report_dir=tmp_path / "reports")


def ctr_inputs(registry: Registry) -> dict[str, np.ndarray]:
    from shopserve.models import featurize
    from shopserve.models.features import FeatureSpec

    loaded = registry.load("ctr@1")
    import pyarrow.parquet as pq

    rows = pq.read_table(loaded.files["eval.parquet"])
    return featurize(FeatureSpec.model_validate(loaded.meta.config["features"]), rows)
