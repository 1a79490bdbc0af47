"""A registry with tiny real models (a linear ONNX scorer, a CTR model) for the serving tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pyarrow as pa
import pytest
from onnx import TensorProto, helper

from shopserve.models import CtrTrainSpec, train_ctr_table
from shopserve.registry import Registry
from shopserve.types import ModelKind

WEIGHTS = np.array([0.5, -1.0, 2.0, 0.25], dtype=np.float32)


def linear_onnx(path: Path, weights: np.ndarray = WEIGHTS) -> Path:
    """y = x @ w for x: float32[batch, 4]: a generic model small enough to make in a test."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 1], weights.tolist())
    shape = helper.make_tensor("shape", TensorProto.INT64, [1], [-1])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]),
         helper.make_node("Reshape", ["xw", "shape"], ["y"])],
        "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch"])], [w, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def click_table(rows: int = 400, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    i1 = rng.normal(size=rows)
    c1 = rng.choice(["a", "b", "c"], size=rows)
    logit = 1.5 * i1 + (c1 == "a") * 1.0 - 0.5
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return pa.table({"label": label, "I1": i1, "I2": rng.normal(size=rows), "C1": c1})


def ctr_row(i: int = 0) -> dict[str, object]:
    return {"I1": 0.1 * (i % 7), "I2": -0.3, "C1": "abc"[i % 3]}


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
    return home
