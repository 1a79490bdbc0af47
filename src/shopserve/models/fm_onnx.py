"""Writes the numpy factorization machine (and its MLP, when it has one) as an ONNX graph.

Inputs ``dense`` float32 [-1, n_dense] and ``cat`` int64 [-1, n_cat]; output ``score`` float32 [-1].
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from shopserve.models.fm import FmParams

OPSET = 17


def _const(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(value, name=name)


def _linear_nodes() -> list[onnx.NodeProto]:
    return [
        helper.make_node("MatMul", ["dense", "wd"], ["lin_dense"]),  # [B, 1]
        helper.make_node("Gather", ["wc", "cat"], ["lin_cat_each"], axis=0),  # [B, n_cat]
        helper.make_node("ReduceSum", ["lin_cat_each", "axis1"], ["lin_cat"], keepdims=1),
        helper.make_node("Add", ["lin_dense", "lin_cat"], ["lin_sum"]),
        helper.make_node("Add", ["lin_sum", "w0"], ["linear"]),  # [B, 1]
    ]


def _pair_nodes() -> list[onnx.NodeProto]:
    """0.5 * (|sum_f e_f|^2 - sum_f |e_f|^2) over all field vectors."""
    return [
        helper.make_node("Gather", ["vc", "cat"], ["e_cat"], axis=0),  # [B, n_cat, k]
        helper.make_node("Unsqueeze", ["dense", "axis2"], ["dense3"]),  # [B, n_dense, 1]
        helper.make_node("Mul", ["dense3", "vd"], ["e_dense"]),  # [B, n_dense, k]
        helper.make_node("Concat", ["e_cat", "e_dense"], ["e"], axis=1),
        helper.make_node("ReduceSum", ["e", "axis1"], ["s"], keepdims=0),  # [B, k]
        helper.make_node("Mul", ["s", "s"], ["s2"]),
        helper.make_node("ReduceSum", ["s2", "axis1"], ["s2_sum"], keepdims=1),  # [B, 1]
        helper.make_node("Mul", ["e", "e"], ["e2"]),
        helper.make_node("ReduceSum", ["e2", "axes12"], ["e2_sum"], keepdims=0),  # [B]
        helper.make_node("Unsqueeze", ["e2_sum", "axis1"], ["e2_col"]),  # [B, 1]
        helper.make_node("Sub", ["s2_sum", "e2_col"], ["pair_x2"]),
        helper.make_node("Mul", ["pair_x2", "half"], ["pair"]),
    ]


def _mlp_nodes(layers: list[np.ndarray]) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Flatten(e) → (MatMul → Add → Relu)* → MatMul → Add: the deep logit ``deep`` [B, 1]."""
    nodes = [helper.make_node("Flatten", ["e"], ["deep_in"], axis=1)]
    inits: list[onnx.TensorProto] = []
    x, n_layers = "deep_in", len(layers) // 2
    for i in range(n_layers):
        w, b = f"mlp_w{i}", f"mlp_b{i}"
        inits += [_const(w, layers[2 * i].astype(np.float32)),
                  _const(b, layers[2 * i + 1].astype(np.float32))]
        last = i == n_layers - 1
        nodes += [helper.make_node("MatMul", [x, w], [f"mlp_mm{i}"]),
                  helper.make_node("Add", [f"mlp_mm{i}", b], ["deep" if last else f"mlp_z{i}"])]
        if not last:
            nodes.append(helper.make_node("Relu", [f"mlp_z{i}"], [f"mlp_h{i}"]))
            x = f"mlp_h{i}"
    return nodes, inits


def fm_to_onnx(params: FmParams, n_cat: int) -> onnx.ModelProto:
    """The FM (logistic regression with no factors, DeepFM with MLP layers) as ONNX."""
    n_dense, k = params.vd.shape
    inits = [
        _const("w0", params.w0.reshape(1, 1).astype(np.float32)),
        _const("wd", params.wd.reshape(-1, 1).astype(np.float32)),
        _const("wc", params.wc.astype(np.float32)),
        _const("axis1", np.array([1], np.int64)),
        _const("axis2", np.array([2], np.int64)),
        _const("flat", np.array([-1], np.int64)),
    ]
    nodes = _linear_nodes()
    logit = "linear"
    if k:
        inits += [
            _const("vd", params.vd.astype(np.float32)),
            _const("vc", params.vc.astype(np.float32)),
            _const("axes12", np.array([1, 2], np.int64)),
            _const("half", np.array(0.5, np.float32)),
        ]
        nodes += _pair_nodes()
        nodes.append(helper.make_node("Add", ["linear", "pair"], ["logit"]))
        logit = "logit"
    if k and params.mlp:
        deep_nodes, deep_inits = _mlp_nodes(params.mlp)
        nodes += deep_nodes
        inits += deep_inits
        nodes.append(helper.make_node("Add", ["logit", "deep"], ["logit_deep"]))
        logit = "logit_deep"
    nodes += [
        helper.make_node("Reshape", [logit, "flat"], ["logit_flat"]),
        helper.make_node("Sigmoid", ["logit_flat"], ["score"]),
    ]
    graph = helper.make_graph(
        nodes, "shopserve_ctr_fm",
        [helper.make_tensor_value_info("dense", TensorProto.FLOAT, ["batch", n_dense]),
         helper.make_tensor_value_info("cat", TensorProto.INT64, ["batch", n_cat])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="shopserve")
    model.ir_version = 8  # readable by every ONNX Runtime shopserve supports
    onnx.checker.check_model(model)
    return model

