"""Tiny real ONNX models and data for the optimize tests, made with ``onnx.helper``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def make_mlp(path: Path, n_in: int = 16, hidden: tuple[int, ...] = (64, 32),
             seed: int = 0) -> Path:
    """``x`` float32 [batch, n_in] → Gemm/ReLU layers (and a MatMul+Add one) → ``score`` [batch]."""
    rng = np.random.default_rng(seed)
    nodes, inits, prev, width = [], [], "x", n_in
    for i, units in enumerate(hidden):
        w = (rng.normal(size=(units, width)) / np.sqrt(width)).astype(np.float32)
        b = (rng.normal(size=units) * 0.1).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes += [helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [f"h{i}"], transB=1),
                  helper.make_node("Relu", [f"h{i}"], [f"a{i}"])]
        prev, width = f"a{i}", units
    w_out = (rng.normal(size=(width, 1)) / np.sqrt(width)).astype(np.float32)
    inits += [numpy_helper.from_array(w_out, "w_out"),
              numpy_helper.from_array(np.array([0.1], np.float32), "b_out"),
              numpy_helper.from_array(np.array([-1], np.int64), "flat")]
    nodes += [helper.make_node("MatMul", [prev, "w_out"], ["logit2d"]),
              helper.make_node("Add", ["logit2d", "b_out"], ["logit_b"]),
              helper.make_node("Reshape", ["logit_b", "flat"], ["logit"]),
              helper.make_node("Sigmoid", ["logit"], ["score"])]
    graph = helper.make_graph(
        nodes, "tiny_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def make_inputs(n: int = 512, n_in: int = 16, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, n_in)).astype(np.float32)


def make_no_weights(path: Path) -> Path:
    """A graph with nothing to quantize or prune: ``y = relu(x) + x``."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "x"], ["y"])],
        "no_weights",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def make_matmul_mlp(path: Path, n_in: int = 256, hidden: int = 128, seed: int = 0) -> Path:
    """``x`` [batch, n_in] → MatMul+Add → ReLU → MatMul → ``y`` [batch, 8]: the shape of a
    transformer's dense layers, whose weights int8-weight-only quantizes in blocks."""
    rng = np.random.default_rng(seed)
    w1 = (rng.normal(size=(n_in, hidden)) / np.sqrt(n_in)).astype(np.float32)
    w2 = (rng.normal(size=(hidden, 8)) / np.sqrt(hidden)).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
             numpy_helper.from_array((rng.normal(size=hidden) * 0.1).astype(np.float32), "b1")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="dense1"),
             helper.make_node("Add", ["h", "b1"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["a"]),
             helper.make_node("MatMul", ["a", "w2"], ["y"], name="dense2")]
    graph = helper.make_graph(
        nodes, "dense_stack",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
