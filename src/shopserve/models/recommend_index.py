"""The item index as one ONNX graph: customer position → Gather → MatMul → TopK.

The last customer row is the "unknown customer": it carries only a popularity dimension, so new
and anonymous customers get the best sellers from the same graph.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from shopserve.models.fm_onnx import OPSET


def index_tables(
    users: np.ndarray, items: np.ndarray, pop: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Customer table [n_users + 1, f + 1] and item table [f + 1, n_items] with popularity."""
    n_users, f = users.shape
    pop_score = np.log1p(pop) / max(float(np.log1p(pop).max()), 1e-9)
    user_table = np.zeros((n_users + 1, f + 1), dtype=np.float32)
    user_table[:n_users, :f] = users
    user_table[n_users, f] = 1.0
    item_table = np.concatenate([items.T, pop_score[None, :]], axis=0).astype(np.float32)
    return user_table, item_table


def index_to_onnx(user_table: np.ndarray, item_table: np.ndarray, k: int) -> onnx.ModelProto:
    """Input ``customer`` int64 [-1]; outputs ``scores`` float32 and ``items`` int64 [-1, k]."""
    nodes = [
        helper.make_node("Gather", ["user_table", "customer"], ["user_vec"], axis=0),
        helper.make_node("MatMul", ["user_vec", "item_table"], ["all_scores"]),
        helper.make_node("TopK", ["all_scores", "k"], ["scores", "items"], axis=1,
                         largest=1, sorted=1),
    ]
    graph = helper.make_graph(
        nodes, "shopserve_item_index",
        [helper.make_tensor_value_info("customer", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", k]),
         helper.make_tensor_value_info("items", TensorProto.INT64, ["batch", k])],
        initializer=[
            numpy_helper.from_array(user_table, name="user_table"),
            numpy_helper.from_array(item_table, name="item_table"),
            numpy_helper.from_array(np.array([k], np.int64), name="k"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="shopserve")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
