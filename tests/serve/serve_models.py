"""Tiny real models for the serving tests: a linear ONNX scorer and a CTR click table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pyarrow as pa
from onnx import TensorProto, helper

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
