"""optimize → validate → register against a real registry and the real CTR pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests.optimize.conftest import ctr_inputs

from shopserve.errors import ConflictError, InputError, NotFoundError, UsageError
from shopserve.optimize import OptimizeSettings, QualityBudget, VariantStatus, optimize
from shopserve.registry import Registry
from shopserve.types import VersionStatus


def test_gate_accepts_int8_and_rejects_heavy_pruning(
    registry: Registry, fast: OptimizeSettings
) -> None:
    report = optimize(registry, "ctr@1", ["int8-dynamic", "prune-unstructured:sparsity=0.97"],
                      QualityBudget(max_auc_drop=0.002), fast)
    parent, int8, pruned = report.variants
    assert parent.status is VariantStatus.PARENT and parent.ref == "ctr@1"
    assert int8.status is VariantStatus.READY and int8.reason is None
    assert abs(int8.deltas["auc"]) <= 0.002
    assert pruned.status is VariantStatus.REJECTED
    # Zeroing 97% of the dense weights reorders the slates (and may move AUC either way).
    assert pruned.reason is not None
    assert "top-k agreement with the parent" in pruned.reason or "auc dropped" in pruned.reason

    child = registry.get(int8.ref or "")
    assert child.parent == "ctr@1" and child.status is VersionStatus.READY
    assert child.optimization is not None and child.optimization.recipe == "int8-dynamic"
    assert child.metrics["size_bytes"] < registry.get("ctr@1").files["model.onnx"].size
    assert {"auc", "logloss", "latency_ms_b1", "throughput_b256", "topk_agreement"} <= set(
        child.metrics)
    assert child.files["eval.parquet"] == registry.get("ctr@1").files["eval.parquet"]

    rejected = registry.get(pruned.ref or "")
    assert rejected.status is VersionStatus.REJECTED and rejected.reason == pruned.reason
    assert rejected.parent == "ctr@1"
    assert rejected.optimization is not None
    assert rejected.optimization.params["prune-unstructured"]["sparsity"] == 0.97
    with pytest.raises(ConflictError):
        registry.promote(rejected.ref, "production")
    assert rejected.aliases == ()


def test_promote_moves_alias_to_accepted_child_and_reports_are_written(
    registry: Registry, tmp_path: Path
) -> None:
    from tests.optimize.conftest import FAST_SPEED

    settings = OptimizeSettings(speed=FAST_SPEED, report_dir=tmp_path / "out",
                                promote="production")
    report = optimize(registry, "ctr@1", ["int8-static"], QualityBudget(max_auc_drop=0.01),
                      settings)
    child = report.variants[1]
    assert child.status is VariantStatus.READY
    assert registry.get("ctr@production").ref == child.ref
    assert report.promoted == f"production → {child.ref}"
    data = json.loads((tmp_path / "out" / "optimize-ctr-1.json").read_text())
    assert [v["name"] for v in data["variants"]] == ["fp32", "int8-static"]
    assert set(data["variants"][1]["latency_ms"]) == {"1", "32", "256"}
    markdown = (tmp_path / "out" / "optimize-ctr-1.md").read_text()
    assert "| int8-static | ctr@2 | ready |" in markdown
    assert "rows/s@256" in report.to_table()


def versions(registry: Registry) -> list[str]:
    return [v.ref for v in registry.list_versions("ctr")]


def test_recipe_that_does_not_apply_registers_nothing(
    registry: Registry, fast: OptimizeSettings
) -> None:
    # fp16 is for GPU targets; this run is on the CPU.
    with pytest.raises(UsageError, match="recipe 'fp16' does not apply"):
        optimize(registry, "ctr@1", ["int8-dynamic", "fp16"], None, fast)
    assert versions(registry) == ["ctr@1"]


def test_unknown_version_and_missing_eval_file(
    registry: Registry, fast: OptimizeSettings, tmp_path: Path
) -> None:
    with pytest.raises(NotFoundError):
        optimize(registry, "ctr@7", ["int8-dynamic"], None, fast)
    loaded = registry.load("ctr@1")
    registry.register("ctr", files={"model.onnx": loaded.files["model.onnx"]},
                      kind=loaded.meta.kind, config=loaded.meta.config)
    with pytest.raises(NotFoundError, match=r"'eval\.parquet' is missing"):
        optimize(registry, "ctr@2", ["int8-dynamic"], None, fast)
    assert versions(registry) == ["ctr@1", "ctr@2"]


def test_calibration_file_is_checked_against_the_graph(
    registry: Registry, fast: OptimizeSettings, tmp_path: Path
) -> None:
    good = ctr_inputs(registry)
    bad = tmp_path / "bad.npz"
    np.savez(bad, dense=good["dense"][:, :-1], cat=good["cat"])
    settings = fast.model_copy(update={"calibration": bad})
    n_dense = good["dense"].shape[1]
    with pytest.raises(InputError, match=f"bad.npz: input 'dense': axis 1 must be {n_dense}"):
        optimize(registry, "ctr@1", ["int8-static"], None, settings)
    np.savez(bad, dense=good["dense"])
    with pytest.raises(InputError, match=r"missing \['cat'\]"):
        optimize(registry, "ctr@1", ["int8-static"], None, settings)
    with pytest.raises(NotFoundError, match=r"absent\.npz: no such file"):
        optimize(registry, "ctr@1", ["int8-static"], None,
                 fast.model_copy(update={"calibration": tmp_path / "absent.npz"}))
    assert versions(registry) == ["ctr@1"]

    ok = tmp_path / "ok.npz"
    np.savez(ok, **good)
    report = optimize(registry, "ctr@1", ["int8-static"], QualityBudget(max_auc_drop=0.01),
                      fast.model_copy(update={"calibration": ok}))
    assert report.variants[1].status is VariantStatus.READY
