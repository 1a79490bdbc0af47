"""Each recipe on a tiny MLP made here: outputs stay within a stated tolerance of the fp32 graph
(or, for pruning, change in the stated way), and recipes that cannot apply say why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from tests.optimize.tiny import make_no_weights

from shopserve.errors import UsageError
from shopserve.optimize import RecipeContext, parse_recipe, parse_variant
from shopserve.optimize.calibration import Batch
from shopserve.optimize.graphs import initializers, load_graph, max_abs_diff, run_outputs


def apply(spec: str, graph: Path, ctx: RecipeContext) -> Path:
    for recipe in parse_variant(spec).recipes:
        recipe.check(load_graph(graph), ctx)
        graph = recipe.apply(graph, ctx)
    return graph


def diff(a: Path, b: Path, batches: list[Batch]) -> float:
    return max_abs_diff(run_outputs(a, batches), run_outputs(b, batches))


# Scores are sigmoid outputs in [0, 1]; int8 error on this MLP is measured near 0.01.
@pytest.mark.parametrize(("spec", "tolerance"), [
    ("graph", 1e-5),
    ("int8-dynamic", 0.03),
    ("int8-per-channel", 0.03),
    ("int8-static", 0.03),
    ("int8-static+graph", 0.03),
    ("fp16:allow_cpu=true", 2e-3),
])
def test_recipe_keeps_outputs_within_tolerance(
    spec: str, tolerance: float, mlp: Path, ctx: RecipeContext, mlp_batches: list[Batch]
) -> None:
    out = apply(spec, mlp, ctx)
    assert out != mlp and out.is_file()
    error = diff(mlp, out, mlp_batches)
    assert error <= tolerance
    if spec != "graph":
        assert error > 0  # the rewrite did change the arithmetic
    if spec.startswith("int8"):
        assert out.stat().st_size < mlp.stat().st_size * 0.75  # int8 weights, fp32 scales


def test_int8_static_graph_is_qdq(mlp: Path, ctx: RecipeContext) -> None:
    ops = {n.op_type for n in load_graph(apply("int8-static", mlp, ctx)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_int8_mixed_keeps_sensitive_nodes_fp32_until_error_is_met(
    mlp: Path, ctx: RecipeContext, mlp_batches: list[Batch]
) -> None:
    recipe = parse_recipe("int8-mixed:mode=static,max_output_error=0.002,max_fp32_fraction=1")
    recipe.check(load_graph(mlp), ctx)
    out = recipe.apply(mlp, ctx)
    info = recipe.describe()
    assert set(info["most_sensitive"]) == {"Gemm_0", "Gemm_2", "MatMul_4"}
    assert info["kept_fp32"], "a 0.2% output error cannot be met with every node in int8"
    worst = max(info["most_sensitive"], key=info["most_sensitive"].get)
    assert info["kept_fp32"][0] == worst
    full = apply("int8-static", mlp, ctx)
    assert diff(mlp, out, mlp_batches) < diff(mlp, full, mlp_batches)


def test_prune_unstructured_zeroes_the_smallest_weights(
    mlp: Path, ctx: RecipeContext, mlp_batches: list[Batch]
) -> None:
    out = apply("prune-unstructured:sparsity=0.6", mlp, ctx)
    before, after = initializers(load_graph(mlp)), initializers(load_graph(out))
    for name in ("w0", "w1", "w_out"):
        old, new = numpy_helper.to_array(before[name]), numpy_helper.to_array(after[name])
        assert 0.55 <= float(np.mean(new == 0)) <= 0.65
        kept = new != 0
        assert np.abs(old[kept]).min() >= np.abs(old[~kept]).max()
    assert 0 < diff(mlp, out, mlp_batches) < 1


def test_prune_structured_removes_hidden_units(
    mlp: Path, ctx: RecipeContext, mlp_batches: list[Batch]
) -> None:
    out = apply("prune-structured:fraction=0.5", mlp, ctx)
    after = initializers(load_graph(out))
    assert list(after["w0"].dims) == [32, 16]  # 64 units → 32 (Gemm, transB)
    assert list(after["b0"].dims) == [32]
    assert list(after["w1"].dims) == [16, 32]  # its input side shrinks too, then 32 → 16
    assert list(after["w_out"].dims) == [16, 1]
    assert out.stat().st_size < mlp.stat().st_size * 0.5
    assert run_outputs(out, mlp_batches)[0].shape == (512,)


@pytest.mark.parametrize(("spec", "why"), [
    ("int8-dynamic", "no MatMul, Conv, Gather node"),
    ("int8-static", "no MatMul, Gemm, Conv, Gather node"),
    ("int8-mixed", "no MatMul, Conv node"),
    ("prune-unstructured", "no MatMul, Gemm or Conv"),
    ("prune-structured", "no dense → elementwise → dense chain"),
])
def test_recipe_that_does_not_apply_says_why(
    spec: str, why: str, tmp_path: Path, ctx: RecipeContext
) -> None:
    graph = make_no_weights(tmp_path / "plain.onnx")
    with pytest.raises(UsageError, match=f"recipe '{spec}' does not apply to no_weights: .*{why}"):
        apply(spec, graph, ctx)


def test_fp16_on_cpu_is_refused(mlp: Path, ctx: RecipeContext) -> None:
    with pytest.raises(UsageError, match="fp16 is for GPU targets"):
        apply("fp16", mlp, ctx)


def test_quantizing_twice_or_after_fusion_is_refused(mlp: Path, ctx: RecipeContext) -> None:
    with pytest.raises(UsageError, match="already quantized"):
        apply("int8-dynamic+int8-static", mlp, ctx)
    with pytest.raises(UsageError, match=r"fused ops \['FusedGemm'\].*int8-static\+graph"):
        apply("graph+int8-static", mlp, ctx)


@pytest.mark.parametrize(("spec", "message"), [
    ("int8-fast", "unknown recipe 'int8-fast'; known recipes: fp16, graph"),
    ("prune-unstructured:sparsity=2", "sparsity: Input should be less than 1"),
    ("prune-structured:width=3", "width: Extra inputs are not permitted"),
    ("int8-static:per_channel", "expected key=value"),
    ("+", "empty recipe"),
])
def test_bad_recipe_specs_are_named(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace("+", r"\+")):
        parse_variant(spec)


def test_missing_and_broken_graphs(tmp_path: Path, ctx: RecipeContext) -> None:
    from shopserve.errors import IntegrityError, NotFoundError

    with pytest.raises(NotFoundError, match="no such ONNX file"):
        apply("int8-dynamic", tmp_path / "absent.onnx", ctx)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(IntegrityError, match="not a readable ONNX model"):
        apply("int8-dynamic", broken, ctx)
    assert onnx.__version__  # onnx stays importable after the failed loads


def test_int8_weight_only_quantizes_matmul_weights_in_blocks(tmp_path: Path) -> None:
    from tests.optimize.tiny import make_matmul_mlp

    graph = make_matmul_mlp(tmp_path / "dense.onnx")
    x = np.random.default_rng(2).normal(size=(64, 256)).astype(np.float32)
    batches = [{"x": x}]
    ctx = RecipeContext(work_dir=tmp_path / "work", calibration=lambda: batches)
    out = apply("int8-weight-only", graph, ctx)
    nodes = load_graph(out).graph.node
    assert [n.op_type for n in nodes if "MatMul" in n.op_type] == ["MatMulNBits"] * 2
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nodes[0].attribute}
    assert (attrs["bits"], attrs["block_size"], attrs["accuracy_level"]) == (8, 128, 4)
    # Outputs have unit scale; int8 weights and int8 activations per block (accuracy level 4)
    # move them by 0.035 at most here.
    error = diff(graph, out, batches)
    assert 0 < error <= 0.05
    assert out.stat().st_size < graph.stat().st_size * 0.4
    four = apply("int8-weight-only:bits=4,block_size=32", graph, ctx)
    assert diff(graph, four, batches) > error  # fewer bits, more error: the params are used
    with pytest.raises(UsageError, match=r"int8-weight-only' does not apply .*already quantized"):
        apply("int8-weight-only", out, ctx)


def test_int8_weight_only_refuses_graphs_without_matmul_weights(
    mlp: Path, ctx: RecipeContext, tmp_path: Path
) -> None:
    # The tiny MLP's one MatMul has a constant weight, so it applies; a graph of none does not.
    assert apply("int8-weight-only", mlp, ctx).is_file()
    with pytest.raises(UsageError, match=r"no MatMul node with a constant 2-D fp32 weight"):
        apply("int8-weight-only", make_no_weights(tmp_path / "none.onnx"), ctx)
    with pytest.raises(UsageError, match=r"block_size.*power of two"):
        parse_recipe("int8-weight-only:block_size=100")
    with pytest.raises(UsageError, match=r"bits"):
        parse_recipe("int8-weight-only:bits=3")
