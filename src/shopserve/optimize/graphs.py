"""Reading ONNX graphs for optimize: loading with clear errors, finding weights and the nodes a
recipe can act on, and checking that a rewritten graph still computes the same outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from shopserve.errors import IntegrityError, NotFoundError
from shopserve.runtime.onnx import OnnxModel, SessionSettings

WEIGHT_OPS = frozenset({"MatMul", "Gemm", "Conv", "Gather", "Attention", "EmbedLayerNormalization"})
QUANTIZED_OPS = frozenset({
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger",
    "QLinearMatMul", "QLinearConv", "ConvInteger", "DynamicQuantizeMatMul", "QAttention",
    "MatMulNBits",
})
FLOAT = onnx.TensorProto.FLOAT
BERT_HINTS = frozenset({"Softmax", "Attention", "MultiHeadAttention", "LayerNormalization",
                        "SkipLayerNormalization", "EmbedLayerNormalization"})


def load_graph(path: Path) -> onnx.ModelProto:
    """The ONNX model at ``path``; ``NotFoundError`` if missing, ``IntegrityError`` if broken."""
    if not path.is_file():
        raise NotFoundError(f"{path}: no such ONNX file")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise IntegrityError(f"{path}: not a readable ONNX model: {exc}") from exc


def initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {init.name: init for init in model.graph.initializer}


def op_types(model: onnx.ModelProto) -> set[str]:
    return {node.op_type for node in model.graph.node}


def is_quantized(model: onnx.ModelProto) -> bool:
    return bool(op_types(model) & QUANTIZED_OPS)


def is_float16(model: onnx.ModelProto) -> bool:
    return any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)


def looks_like_transformer(model: onnx.ModelProto) -> bool:
    """Attention-style graphs (Softmax over MatMuls, layer norms) that ORT's bert fusions fit."""
    ops = op_types(model)
    return "MatMul" in ops and len(ops & BERT_HINTS) > 0 and "Softmax" in ops | {
        o for o in ops if "Attention" in o}


def weighted_nodes(model: onnx.ModelProto, ops: Sequence[str] = ("MatMul", "Gemm"),
                   matrix_only: bool = False) -> list[str]:
    """Names of nodes of ``ops`` whose weight input is a constant float tensor (2-D only with
    ``matrix_only``). Unnamed nodes are listed as ``op_type#position``."""
    inits = initializers(model)
    names = []
    for i, node in enumerate(model.graph.node):
        slot = 0 if node.op_type == "Gather" else 1  # Gather's table is its data input
        weight = inits.get(node.input[slot]) if len(node.input) > 1 else None
        if node.op_type not in ops or weight is None or weight.data_type != FLOAT:
            continue
        if not matrix_only or len(weight.dims) == 2:
            names.append(node.name or f"{node.op_type}#{i}")
    return names


def name_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every unnamed node a stable name, so recipes can include or exclude it."""
    taken = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            candidate = f"{node.op_type}_{i}"
            while candidate in taken:
                candidate += "_"
            node.name = candidate
            taken.add(candidate)
    return model


def replace_initializer(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    for i, init in enumerate(model.graph.initializer):
        if init.name == name:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(value, name))
            return
    raise KeyError(name)


def save_graph(model: onnx.ModelProto, path: Path) -> Path:
    """Check and write ``model``; a rewrite that broke the graph is refused before it is used."""
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise IntegrityError(f"{path.name}: rewritten graph is not valid ONNX: {exc}") from exc
    onnx.save(model, str(path))
    return path


def run_outputs(path: Path, batches: Sequence[dict[str, np.ndarray]],
                settings: SessionSettings | None = None) -> list[np.ndarray]:
    """Every output of the graph at ``path`` over ``batches``, concatenated per output."""
    model = OnnxModel(path, settings)
    results: list[list[np.ndarray]] = [[] for _ in model.output_names]
    for batch in batches:
        out = model.run(batch)
        for i, name in enumerate(model.output_names):
            results[i].append(np.asarray(out[name], dtype=np.float64))
    return [np.concatenate(r, axis=0) for r in results]


def max_abs_diff(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    """Largest absolute difference over matching outputs (shapes must agree)."""
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        if x.shape != y.shape:
            raise IntegrityError(f"output shapes differ: {list(x.shape)} vs {list(y.shape)}")
        if x.size:
            worst = max(worst, float(np.max(np.abs(x - y))))
    return worst


def check_parity(source: Path, converted: Path, batches: Sequence[dict[str, np.ndarray]],
                 atol: float, settings: SessionSettings | None = None) -> float:
    """Compare outputs on real inputs; ``IntegrityError`` when they differ by more than ``atol``."""
    diff = max_abs_diff(run_outputs(source, batches, settings),
                        run_outputs(converted, batches, settings))
    if not diff <= atol:
        raise IntegrityError(
            f"{converted.name}: outputs differ from {source.name} by {diff:.3g} on real inputs "
            f"(tolerance {atol:g})"
        )
    return diff
