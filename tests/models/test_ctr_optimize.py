"""The reference DeepFM through optimize: static int8 (per-channel QDQ) within the AUC budget."""

from __future__ import annotations

from pathlib import Path

import onnx

from shopserve.data import DemoShopSpec, generate_demo_shop
from shopserve.models import train_and_register
from shopserve.optimize import (
    OptimizeSettings,
    QualityBudget,
    SpeedSettings,
    VariantStatus,
    optimize,
)
from shopserve.registry import Registry
from shopserve.types import ModelKind


def test_int8_static_child_of_the_deepfm_is_accepted(tmp_path: Path) -> None:
    reg = Registry.open(tmp_path / "home")
    shop = generate_demo_shop(DemoShopSpec(seed=0, products=100, customers=20, queries=10,
                                           ctr_rows=4000))
    parent = train_and_register(ModelKind.RANK, shop, reg, "ctr")
    settings = OptimizeSettings(speed=SpeedSettings(warmup=1, min_runs=2,
                                                    seconds_per_batch=0.02))
    report = optimize(reg, parent.ref, ["int8-static+graph"],
                      QualityBudget(max_auc_drop=0.002), settings)
    child = report.variants[1]
    assert child.status is VariantStatus.READY, child.reason
    assert abs(child.deltas["auc"]) <= 0.002
    loaded = reg.load(child.ref or "")
    graph = onnx.load(str(loaded.files["model.onnx"]))
    ops = {n.op_type for n in graph.graph.node}
    # The MLP's matrix products now run on int8 operands.
    assert ops & {"QLinearMatMul", "MatMulInteger", "DynamicQuantizeMatMul",
                  "MatMulIntegerToFloat", "DequantizeLinear"}
    assert loaded.meta.parent == parent.ref
