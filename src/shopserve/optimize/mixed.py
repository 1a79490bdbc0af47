"""``int8-mixed``: quantize to int8 but keep the nodes most sensitive to quantization in fp32.

Sensitivity of a node is the relative output error when only that node is quantized, measured on
the version's real inputs; the worst nodes are kept in fp32 (1, 2, 4, ... of them) until the
candidate passes the quality gate.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from pydantic import BaseModel, ConfigDict, Field

from shopserve.optimize import ortools
from shopserve.optimize.graphs import (
    is_float16,
    is_quantized,
    load_graph,
    name_nodes,
    run_outputs,
    save_graph,
    weighted_nodes,
)
from shopserve.optimize.recipes import Recipe, RecipeContext, register_recipe

MIXED_OPS = {"dynamic": ("MatMul", "Conv"), "static": ("MatMul", "Gemm", "Conv")}


class MixedParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["dynamic", "static"] = "dynamic"
    max_fp32_fraction: float = Field(default=0.5, gt=0, le=1)  # most nodes ever kept in fp32
    max_output_error: float = Field(default=0.01, gt=0)  # used when no quality gate is given
    per_channel: bool = True


def relative_error(ref: Sequence[np.ndarray], got: Sequence[np.ndarray]) -> float:
    num = sum(float(np.sum((a - b) ** 2)) for a, b in zip(ref, got, strict=True))
    den = sum(float(np.sum(a**2)) for a in ref)
    return float(np.sqrt(num / max(den, 1e-30)))


def exclusion_steps(n: int, limit: int) -> list[int]:
    """0, 1, 2, 4, ... kept-fp32 counts up to ``limit`` (which is always tried last)."""
    steps, k = [0], 1
    while k < limit:
        steps.append(k)
        k *= 2
    if limit > 0:
        steps.append(min(limit, n))
    return sorted(set(steps))


@register_recipe
class Int8MixedRecipe(Recipe):
    name = "int8-mixed"
    summary = "int8 with the most quantization-sensitive nodes kept in fp32 to meet the budget"
    Params = MixedParams

    def __init__(self, params: BaseModel | None = None) -> None:
        super().__init__(params)
        self.kept_fp32: list[str] = []
        self.sensitivity: dict[str, float] = {}

    def check(self, model: onnx.ModelProto, ctx: RecipeContext) -> None:
        graph = model.graph.name or "this graph"
        if is_quantized(model) or is_float16(model):
            raise self.refuse(graph, "it is already quantized or fp16")
        assert isinstance(self.params, MixedParams)
        ops = MIXED_OPS[self.params.mode]
        if not weighted_nodes(model, ops):
            raise self.refuse(graph, f"it has no {', '.join(ops)} node with constant fp32 "
                              f"weights to quantize in {self.params.mode} mode")

    def _spec(self, ctx: RecipeContext, **kw: Any) -> ortools.QuantSpec:
        assert isinstance(self.params, MixedParams)
        static = self.params.mode == "static"
        return ortools.QuantSpec(static=static, per_channel=self.params.per_channel,
                                 calibration=ctx.calibration() if static else (), **kw)

    def measure(self, named: Path, nodes: list[str], ctx: RecipeContext) -> dict[str, float]:
        """Relative output error with only each node quantized, one quantization per node."""
        batches = ctx.calibration()
        reference = run_outputs(named, batches, ctx.session)
        scores: dict[str, float] = {}
        for node in nodes:
            probe = ortools.quantize(named, ctx.work_dir / "probe.onnx",
                                     self._spec(ctx, nodes_to_quantize=[node]))
            scores[node] = relative_error(reference, run_outputs(probe, batches, ctx.session))
        return scores

    def apply(self, graph_path: Path, ctx: RecipeContext) -> Path:
        assert isinstance(self.params, MixedParams)
        named = save_graph(name_nodes(load_graph(graph_path)), ctx.path("named"))
        nodes = weighted_nodes(load_graph(named), MIXED_OPS[self.params.mode])
        self.sensitivity = self.measure(named, nodes, ctx)
        ranked = sorted(nodes, key=lambda n: self.sensitivity[n], reverse=True)
        limit = max(1, int(len(nodes) * self.params.max_fp32_fraction))
        reference = run_outputs(named, ctx.calibration(), ctx.session)
        candidate = named
        for k in exclusion_steps(len(nodes), limit):
            self.kept_fp32 = ranked[:k]
            candidate = ortools.quantize(named, ctx.path(f"{self.name}-{k}"),
                                         self._spec(ctx, nodes_to_exclude=self.kept_fp32))
            if self._passes(candidate, reference, ctx):
                break
        return candidate

    def _passes(self, candidate: Path, reference: list[np.ndarray], ctx: RecipeContext) -> bool:
        assert isinstance(self.params, MixedParams)
        if ctx.within_budget is not None:
            return ctx.within_budget(candidate) is None
        got = run_outputs(candidate, ctx.calibration(), ctx.session)
        return relative_error(reference, got) <= self.params.max_output_error

    def describe(self) -> dict[str, Any]:
        worst = sorted(self.sensitivity.items(), key=lambda kv: kv[1], reverse=True)[:5]
        return {**super().describe(), "kept_fp32": list(self.kept_fp32),
                "most_sensitive": {k: round(v, 6) for k, v in worst}}
