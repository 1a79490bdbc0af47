"""The recommendation model (Gather → MatMul → TopK) through optimize on a small demo shop:
children are gated on recall_at_20 / ndcg_at_20 and on per-customer top-10 agreement."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopserve.data import DemoShopSpec, generate_demo_shop
from shopserve.models import TrainedModel, train_recommender
from shopserve.optimize import OptimizeSettings, QualityBudget, VariantStatus, optimize
from shopserve.registry import Registry
from shopserve.types import VersionStatus


@pytest.fixture(scope="module")
def trained_rec(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    return train_recommender(generate_demo_shop(DemoShopSpec.small()),
                             tmp_path_factory.mktemp("rec"))


@pytest.fixture
def rec_registry(tmp_path: Path, trained_rec: TrainedModel) -> Registry:
    reg = Registry.open(tmp_path / "home")
    reg.register("rec", files=dict(trained_rec.files), kind=trained_rec.kind,
                 signature=trained_rec.signature, config=trained_rec.config,
                 metrics=trained_rec.metrics, data_hash=trained_rec.data_hash)
    return reg


def test_graph_and_int8_children_are_gated_on_recall_ndcg_and_agreement(
    rec_registry: Registry, fast: OptimizeSettings
) -> None:
    report = optimize(rec_registry, "rec@1", ["graph", "int8-weight-only", "int8-dynamic"],
                      QualityBudget(), fast)
    parent, graph, weight_only, dynamic = report.variants
    assert set(parent.metrics) >= {"recall_at_20", "ndcg_at_20"}
    assert graph.status is VariantStatus.READY and graph.topk_agreement == 1.0
    assert graph.deltas["recall_at_20"] == 0.0
    for child in (weight_only, dynamic):
        assert child.topk_agreement is not None
        passed = (child.topk_agreement >= 0.95 and child.deltas["recall_at_20"] >= -0.01
                  and child.deltas["ndcg_at_20"] >= -0.005)
        assert (child.status is VariantStatus.READY) == passed, child
    assert weight_only.status is VariantStatus.READY, weight_only.reason
    child = rec_registry.get(weight_only.ref or "")
    assert child.parent == "rec@1" and child.status is VersionStatus.READY
    assert child.optimization is not None and child.optimization.recipe == "int8-weight-only"
    assert child.files["items.json"] == rec_registry.get("rec@1").files["items.json"]


def test_damaged_recommender_is_rejected_with_its_reason(
    rec_registry: Registry, fast: OptimizeSettings
) -> None:
    report = optimize(rec_registry, "rec@1", ["int8-weight-only:bits=4,block_size=16"],
                      QualityBudget(min_topk_agreement=0.999, max_ndcg_drop=0.0,
                                    max_recall_drop=0.0), fast)
    child = report.variants[1]
    assert child.status is VariantStatus.REJECTED
    assert child.reason is not None and "top-k agreement with the parent" in child.reason
    assert rec_registry.get(child.ref or "").status is VersionStatus.REJECTED
