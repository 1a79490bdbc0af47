"""A registry with tiny real models (a linear ONNX scorer, two CTR versions) for serving tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from serve_models import WEIGHTS, click_table, linear_onnx

from shopserve.data import DemoShopSpec, generate_demo_shop
from shopserve.models import CtrTrainSpec, train_ctr_table
from shopserve.models.recommend import RecommendTrainSpec, train_recommender
from shopserve.registry import Registry
from shopserve.types import ModelKind


@pytest.fixture(scope="session")
def serve_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("serve-home")
    reg = Registry.open(home)
    work = tmp_path_factory.mktemp("serve-models")
    reg.register("linear", {"model.onnx": linear_onnx(work / "linear.onnx")}, ModelKind.GENERIC)
    reg.register("linear", {"model.onnx": linear_onnx(work / "linear2.onnx", WEIGHTS * 2)},
                 ModelKind.GENERIC)
    reg.promote("linear@1", "production")
    for seed in (0, 1):
        trained = train_ctr_table(click_table(seed=seed), work / f"ctr{seed}",
                                  CtrTrainSpec(seed=seed))
        reg.register("ctr", trained.files, trained.kind, signature=trained.signature,
                     config=trained.config, metrics=trained.metrics)
    reg.promote("ctr@1", "production")
    shop = generate_demo_shop(DemoShopSpec.small())
    rec = train_recommender(shop, work / "rec", RecommendTrainSpec(test_weeks=1))
    reg.register("rec", rec.files, rec.kind, signature=rec.signature, config=rec.config,
                 metrics=rec.metrics)
    return home
