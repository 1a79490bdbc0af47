"""The learned re-ranker: a linear pairwise (RankNet) model in numpy, saved as an ONNX graph.

The graph standardizes its features itself, so serving only feeds raw feature rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from shopserve.errors import InputError

RERANK_INPUT = "features"
RERANK_OUTPUT = "score"


@dataclass(frozen=True)
class RankGroup:
    """One query's candidates: feature rows and graded labels (higher is better)."""

    features: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class LinearRanker:
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray

    def score(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(((features - self.mean) / self.scale) @ self.weights, dtype=np.float32)


def _pairs(groups: list[RankGroup], rng: np.random.Generator, cap: int) -> tuple[np.ndarray, ...]:
    firsts, seconds, weights = [], [], []
    offset = 0
    for group in groups:
        lab = group.labels
        i, j = np.nonzero(lab[:, None] > lab[None, :])
        if i.size > cap:
            keep = rng.choice(i.size, cap, replace=False)
            i, j = i[keep], j[keep]
        firsts.append(i + offset)
        seconds.append(j + offset)
        weights.append(lab[i] - lab[j])
        offset += len(lab)
    return np.concatenate(firsts), np.concatenate(seconds), np.concatenate(weights)


def fit_ranker(
    groups: list[RankGroup], epochs: int = 200, l2: float = 1e-3, seed: int = 0
) -> LinearRanker:
    """Pairwise logistic regression, each pair weighted by its label difference."""
    groups = [g for g in groups if len(g.labels) > 1 and np.ptp(g.labels) > 0]
    if not groups:
        raise InputError("re-ranker training: no query has candidates of different relevance")
    features = np.concatenate([g.features for g in groups]).astype(np.float64)
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale < 1e-6] = 1.0
    std = (features - mean) / scale
    first, second, weight = _pairs(groups, np.random.default_rng(seed), cap=400)
    diff = std[first] - std[second]
    weight = weight / weight.sum()
    w = np.zeros(std.shape[1])
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for step in range(1, epochs + 1):  # Adam on the full batch of pairs
        margin = diff @ w
        grad = -(weight * _sigmoid(-margin)) @ diff + l2 * w
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad**2
        w -= 0.05 * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    return LinearRanker(mean.astype(np.float32), scale.astype(np.float32), w.astype(np.float32))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)))


def ranker_to_onnx(ranker: LinearRanker) -> bytes:
    """``features [batch, F] float32 -> score [batch] float32`` as a serialized ONNX model."""
    n = int(ranker.weights.size)
    inits = [
        numpy_helper.from_array(ranker.mean.reshape(1, n), "mean"),
        numpy_helper.from_array(ranker.scale.reshape(1, n), "scale"),
        numpy_helper.from_array(ranker.weights.reshape(n, 1), "weights"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "flat"),
    ]
    nodes = [
        helper.make_node("Sub", [RERANK_INPUT, "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "scale"], ["standard"]),
        helper.make_node("MatMul", ["standard", "weights"], ["column"]),
        helper.make_node("Reshape", ["column", "flat"], [RERANK_OUTPUT]),
    ]
    graph = helper.make_graph(
        nodes,
        "search_reranker",
        [helper.make_tensor_value_info(RERANK_INPUT, TensorProto.FLOAT, ["batch", n])],
        [helper.make_tensor_value_info(RERANK_OUTPUT, TensorProto.FLOAT, ["batch"])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())
