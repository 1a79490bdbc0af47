"""Magnitude pruning of a graph's weights: ``prune-unstructured`` zeroes the smallest weights,
``prune-structured`` removes whole hidden units between two dense layers (smaller, faster graph).

Neither fine-tunes: a registered version holds ONNX graphs, not a torch source and its training
data, so the pruned child goes straight to the quality gate, which decides.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from pydantic import BaseModel, ConfigDict, Field

from shopserve.optimize.graphs import (
    initializers,
    is_float16,
    is_quantized,
    load_graph,
    replace_initializer,
    save_graph,
)
from shopserve.optimize.recipes import Recipe, RecipeContext, register_recipe

DENSE_OPS = ("MatMul", "Gemm", "Conv")
ELEMENTWISE = frozenset({"Relu", "LeakyRelu", "Sigmoid", "Tanh", "Gelu", "Erf", "Elu", "Selu",
                         "Softplus", "HardSigmoid", "Add", "Sub", "Mul", "Div", "Identity"})
NO_FINETUNE = "none: registered versions carry no torch source, the quality gate decides"


def dense_weights(model: onnx.ModelProto) -> list[str]:
    """Initializers used as the weight of a MatMul, Gemm or Conv (2-D or more, fp32)."""
    inits = initializers(model)
    names: list[str] = []
    for node in model.graph.node:
        if node.op_type in DENSE_OPS and len(node.input) > 1 and node.input[1] in inits:
            init = inits[node.input[1]]
            if init.data_type == onnx.TensorProto.FLOAT and len(init.dims) >= 2:
                names.append(init.name)
    return sorted(set(names))


def _refuse_non_fp32(recipe: Recipe, model: onnx.ModelProto) -> None:
    if is_quantized(model) or is_float16(model):
        raise recipe.refuse(model.graph.name or "this graph",
                            "it is quantized or fp16; prune the fp32 graph, then quantize")


class UnstructuredParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sparsity: float = Field(default=0.5, gt=0, lt=1)  # fraction of each weight set to zero


@register_recipe
class PruneUnstructuredRecipe(Recipe):
    name = "prune-unstructured"
    summary = "zero the smallest-magnitude weights of every dense layer (no fine-tune)"
    Params = UnstructuredParams

    def check(self, model: onnx.ModelProto, ctx: RecipeContext) -> None:
        _refuse_non_fp32(self, model)
        if not dense_weights(model):
            raise self.refuse(model.graph.name or "this graph",
                              "it has no MatMul, Gemm or Conv with a constant 2-D fp32 weight")

    def apply(self, graph_path: Path, ctx: RecipeContext) -> Path:
        assert isinstance(self.params, UnstructuredParams)
        model = load_graph(graph_path)
        inits = initializers(model)
        for name in dense_weights(model):
            weight = numpy_helper.to_array(inits[name]).copy()
            cut = np.quantile(np.abs(weight), self.params.sparsity)
            weight[np.abs(weight) <= cut] = 0.0
            replace_initializer(model, name, weight)
        return save_graph(model, ctx.path(self.name))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "finetune": NO_FINETUNE}


@dataclass(frozen=True)
class _Chain:
    """first dense → (bias) → elementwise region → second dense, prunable along hidden units."""

    w1: str
    out_axis: int  # axis of w1 that indexes hidden units
    bias: str | None
    w2: str
    in_axis: int  # axis of w2 that indexes hidden units


def _weight_axes(node: onnx.NodeProto, produces: bool) -> int:
    trans_b = any(a.name == "transB" and a.i for a in node.attribute)
    if node.op_type == "Gemm":
        return (0 if trans_b else 1) if produces else (1 if trans_b else 0)
    return 1 if produces else 0


def _consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def _find_terminal(model: onnx.ModelProto, start: str, inits: dict[str, onnx.TensorProto],
                   consumers: dict[str, list[onnx.NodeProto]]) -> onnx.NodeProto | None:
    """The one dense node fed by ``start`` through elementwise ops only, or ``None``."""
    region, frontier, terminals = {start}, [start], []
    outputs = {o.name for o in model.graph.output}
    while frontier:
        tensor = frontier.pop()
        if tensor in outputs:
            return None
        for node in consumers.get(tensor, []):
            if node.op_type in ("MatMul", "Gemm") and node.input[0] == tensor:
                if len(node.input) < 2 or node.input[1] not in inits or node.input[1] in region:
                    return None
                terminals.append(node)
                continue
            if node.op_type not in ELEMENTWISE:
                return None
            for other in node.input:
                if other not in region and not (other in inits and _size(inits[other]) == 1):
                    return None
            for produced in node.output:
                if produced not in region:
                    region.add(produced)
                    frontier.append(produced)
    unique = {id(t): t for t in terminals}
    return next(iter(unique.values())) if len(unique) == 1 else None


def _size(init: onnx.TensorProto) -> int:
    return int(np.prod(init.dims)) if init.dims else 1


def find_chains(model: onnx.ModelProto) -> list[_Chain]:
    inits, consumers = initializers(model), _consumers(model)
    uses = Counter(name for node in model.graph.node for name in node.input)
    chains = []
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2:
            continue
        w1 = node.input[1]
        if w1 not in inits or len(inits[w1].dims) != 2 or uses[w1] != 1:
            continue
        hidden, bias = node.output[0], node.input[2] if len(node.input) > 2 else None
        after = consumers.get(hidden, [])
        if bias is None and len(after) == 1 and after[0].op_type == "Add":
            other = [i for i in after[0].input if i != hidden]
            if len(other) == 1 and other[0] in inits and uses[other[0]] == 1:
                bias, hidden = other[0], after[0].output[0]
        terminal = _find_terminal(model, hidden, inits, consumers)
        if terminal is None or uses[terminal.input[1]] != 1:
            continue
        units = inits[w1].dims[_weight_axes(node, True)]
        if bias is not None and _size(inits[bias]) != units:
            continue
        chains.append(_Chain(w1, _weight_axes(node, True), bias, terminal.input[1],
                             _weight_axes(terminal, False)))
    return chains


class StructuredParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    fraction: float = Field(default=0.25, gt=0, lt=1)  # fraction of hidden units removed


@register_recipe
class PruneStructuredRecipe(Recipe):
    name = "prune-structured"
    summary = "remove the weakest hidden units between two dense layers (no fine-tune)"
    Params = StructuredParams

    def check(self, model: onnx.ModelProto, ctx: RecipeContext) -> None:
        _refuse_non_fp32(self, model)
        if not find_chains(model):
            raise self.refuse(model.graph.name or "this graph", "it has no dense → elementwise "
                              "→ dense chain with constant weights whose hidden units can go")

    def apply(self, graph_path: Path, ctx: RecipeContext) -> Path:
        assert isinstance(self.params, StructuredParams)
        model = load_graph(graph_path)
        for chain in find_chains(model):
            self._prune(model, chain)
        del model.graph.value_info[:]  # hidden shapes changed; ORT infers them again
        return save_graph(model, ctx.path(self.name))

    def _prune(self, model: onnx.ModelProto, chain: _Chain) -> None:
        assert isinstance(self.params, StructuredParams)
        inits = initializers(model)
        w1 = numpy_helper.to_array(inits[chain.w1])
        w2 = numpy_helper.to_array(inits[chain.w2])
        norm1 = np.linalg.norm(np.moveaxis(w1, chain.out_axis, 0).reshape(w1.shape[chain.out_axis],
                                                                          -1), axis=1)
        norm2 = np.linalg.norm(np.moveaxis(w2, chain.in_axis, 0).reshape(w2.shape[chain.in_axis],
                                                                         -1), axis=1)
        units = len(norm1)
        keep_n = max(1, round(units * (1 - self.params.fraction)))
        keep = np.sort(np.argsort(norm1 * norm2)[::-1][:keep_n])
        replace_initializer(model, chain.w1, np.take(w1, keep, axis=chain.out_axis))
        replace_initializer(model, chain.w2, np.take(w2, keep, axis=chain.in_axis))
        if chain.bias is not None:
            bias = numpy_helper.to_array(inits[chain.bias])
            replace_initializer(model, chain.bias, bias.reshape(-1)[keep].reshape(
                (*bias.shape[:-1], keep_n) if bias.ndim else (keep_n,)))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "finetune": NO_FINETUNE}
