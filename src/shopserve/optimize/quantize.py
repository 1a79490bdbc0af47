"""Recipes that change number formats or graph structure without training: ``graph``
(ORT offline optimization and transformer fusions), int8 (dynamic, per-channel, static QDQ,
weight-only) and ``fp16`` for GPU targets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import onnx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shopserve.optimize import ortools
from shopserve.optimize.graphs import (
    check_parity,
    is_float16,
    is_quantized,
    load_graph,
    looks_like_transformer,
    name_nodes,
    save_graph,
    weighted_nodes,
)
from shopserve.optimize.recipes import Recipe, RecipeContext, register_recipe
from shopserve.runtime.onnx import Device, available_providers


class GraphParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    fusions: bool = True  # transformer fusions, where the graph looks like one
    tolerance: float = Field(default=1e-3, gt=0)  # largest output change allowed (absolute)


@register_recipe
class GraphRecipe(Recipe):
    name = "graph"
    summary = "ONNX Runtime offline graph optimization (+ transformer fusions for bert-like graphs)"
    Params = GraphParams

    def apply(self, graph_path: Path, ctx: RecipeContext) -> Path:
        assert isinstance(self.params, GraphParams)
        source = graph_path
        if self.params.fusions and looks_like_transformer(load_graph(graph_path)):
            source = ortools.fuse_transformer(graph_path, ctx.path("fused"))
        out = ortools.optimize_offline(source, ctx.path("graph"))
        check_parity(graph_path, out, ctx.calibration(), self.params.tolerance, ctx.session)
        return out


# ORT quantizes these ops dynamically; static (QDQ) quantization also covers Gemm.
DYNAMIC_OPS = ("MatMul", "Conv", "Gather")
STATIC_OPS = ("MatMul", "Gemm", "Conv", "Gather")


def _refuse_unquantizable(recipe: Recipe, model: onnx.ModelProto,
                          ops: tuple[str, ...]) -> None:
    graph = model.graph.name or "this graph"
    if is_quantized(model):
        raise recipe.refuse(graph, "it is already quantized")
    if is_float16(model):
        raise recipe.refuse(graph, "it holds fp16 weights; int8 needs the fp32 graph")
    if not weighted_nodes(model, ops):
        raise recipe.refuse(graph, f"it has no {', '.join(ops)} node with constant fp32 "
                            "weights to quantize")


@register_recipe
class Int8DynamicRecipe(Recipe):
    name = "int8-dynamic"
    summary = "int8 weights, activations quantized at run time (per-tensor)"
    per_channel = False

    def check(self, model: onnx.ModelProto, ctx: RecipeContext) -> None:
        _refuse_unquantizable(self, model, DYNAMIC_OPS)

    def apply(self, graph_path: Path, ctx: RecipeContext) -> Path:
        spec = ortools.QuantSpec(per_channel=self.per_channel)
        return ortools.quantize(graph_path, ctx.path(self.name), spec)


@register_recipe
class Int8PerChannelRecipe(Int8DynamicRecipe):
    name = "int8-per-channel"
    summary = "int8 weights with one scale per output channel, dynamic activations"
    per_channel = True


class StaticParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    per_channel: bool = True


@register_recipe
class Int8StaticRecipe(Recipe):
    name = "int8-static"
    summary = "int8 QDQ graph, activation ranges calibrated on the version's real inputs"
    Params = StaticParams

    def check(self, model: onnx.ModelProto, ctx: RecipeContext) -> None:
        _refuse_unquantizable(self, model, STATIC_OPS)
        fused = sorted({n.op_type for n in model.graph.node if n.domain == "com.microsoft"})
        if fused:
            raise self.refuse(model.graph.name or "this graph",
                              f"it holds ONNX Runtime fused ops {fused} that QDQ calibration "
                              "cannot see through; quantize first, then optimize "
                              "(int8-static+graph)")

    def apply(self, graph_path: Path, ctx: RecipeContext) -> Path:
        assert isinstance(self.params, StaticParams)
        named = save_graph(name_nodes(load_graph(graph_path)), ctx.path("named"))
        spec = ortools.QuantSpec(static=True, per_channel=self.params.per_channel,
                                 calibration=ctx.calibration())
        return ortools.quantize(named, ctx.path(self.name), spec)


class WeightOnlyParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    bits: Literal[4, 8] = 8
    block_size: int = Field(default=128, ge=16)  # a power of two, along the reduction axis
    symmetric: bool = True
    accuracy_level: Literal[0, 1, 2, 3, 4] = 4  # 4: int8 activations per block at run time

    @field_validator("block_size")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError(f"must be a power of two (16, 32, 64, 128, ...), got {value}")
        return value


@register_recipe
class Int8WeightOnlyRecipe(Recipe):
    """The search encoder's recipe: per-block weight scales keep MiniLM's top-10 results where
    per-tensor dynamic int8 loses them (``bench/optimize/search_encoder.py``)."""

    name = "int8-weight-only"
    summary = "MatMul weights as int8 in blocks of 128 (MatMulNBits), activations per block"
    Params = WeightOnlyParams

    def check(self, model: onnx.ModelProto, ctx: RecipeContext) -> None:
        graph = model.graph.name or "this graph"
        if is_quantized(model):
            raise self.refuse(graph, "it is already quantized")
        if is_float16(model):
            raise self.refuse(graph, "it holds fp16 weights; int8 needs the fp32 graph")
        if not weighted_nodes(model, ("MatMul",), matrix_only=True):
            raise self.refuse(graph, "it has no MatMul node with a constant 2-D fp32 weight "
                              "(Gemm, Conv and Gather weights are left to int8-dynamic)")

    def apply(self, graph_path: Path, ctx: RecipeContext) -> Path:
        assert isinstance(self.params, WeightOnlyParams)
        spec = ortools.WeightOnlySpec(**self.params.model_dump())
        return ortools.quantize_weight_only(graph_path, ctx.path(self.name), spec)


class Fp16Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    allow_cpu: bool = False  # ORT's CPU kernels run fp16 slower than fp32; for tests and checks


@register_recipe
class Fp16Recipe(Recipe):
    name = "fp16"
    summary = "fp16 weights and compute for GPU targets (inputs and outputs stay fp32)"
    Params = Fp16Params

    def check(self, model: onnx.ModelProto, ctx: RecipeContext) -> None:
        assert isinstance(self.params, Fp16Params)
        graph = model.graph.name or "this graph"
        if is_quantized(model) or is_float16(model):
            raise self.refuse(graph, "it is already quantized or fp16")
        on_gpu = ctx.device is Device.CUDA or (
            ctx.device is Device.AUTO and "CUDAExecutionProvider" in available_providers())
        if not on_gpu and not self.params.allow_cpu:
            raise self.refuse(graph, "fp16 is for GPU targets and this run is on the CPU "
                              "(use --device cuda, or fp16:allow_cpu=true to build it anyway)")

    def apply(self, graph_path: Path, ctx: RecipeContext) -> Path:
        return ortools.to_float16(graph_path, ctx.path(self.name))
