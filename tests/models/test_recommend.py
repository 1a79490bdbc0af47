"""Recommendation: ALS on the demo shop against baselines, the index graph, unknown customers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from shopserve.data import DemoShopSpec, generate_demo_shop
from shopserve.errors import InputError
from shopserve.models import TrainedModel, evaluate, load_pipeline
from shopserve.models.als import AlsSpec, train_als
from shopserve.models.recommend import (
    RecommendTrainSpec,
    train_recommender,
    train_recommender_table,
)
from shopserve.models.recommend_index import index_tables, index_to_onnx
from shopserve.models.recommend_pipeline import RecommendPipeline
from shopserve.runtime.onnx import OnnxModel
from shopserve.types import ModelKind


@pytest.fixture(scope="module")
def demo_rec(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    shop = generate_demo_shop(DemoShopSpec.small())
    return train_recommender(shop, tmp_path_factory.mktemp("rec"), RecommendTrainSpec(test_weeks=1))


def test_als_beats_popularity_on_held_out_weeks(demo_rec: TrainedModel) -> None:
    m = demo_rec.metrics
    assert demo_rec.kind is ModelKind.RECOMMEND
    assert m["customers"] >= 20
    assert m["recall_at_20"] > m["baseline_popularity_recall_at_20"]
    assert m["ndcg_at_20"] > m["baseline_popularity_ndcg_at_20"]


def test_pipeline_reproduces_metrics_and_orders_results(demo_rec: TrainedModel) -> None:
    pipe = load_pipeline(ModelKind.RECOMMEND, demo_rec.config, demo_rec.files)
    assert isinstance(pipe, RecommendPipeline)
    again = evaluate(pipe, demo_rec.files["eval.parquet"])
    assert again["recall_at_20"] == pytest.approx(demo_rec.metrics["recall_at_20"])
    known = list(pipe.customer_pos)[:5]
    together = pipe.recommend(known, 10)
    assert [pipe.recommend([c], 10)[0] for c in known] == together
    assert pipe.recommend(known[::-1], 10) == together[::-1]
    for hits in together:
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        assert all(h.title for h in hits)


def test_unknown_and_missing_customers_get_best_sellers(demo_rec: TrainedModel) -> None:
    pipe = RecommendPipeline(demo_rec.config, demo_rec.files)
    anon, new = pipe.recommend([None, "never-seen-customer"], 5)
    assert [h.product_id for h in anon] == [h.product_id for h in new]
    known = list(pipe.customer_pos)
    top = pipe.recommend(known[:1], 5)[0]
    assert [h.product_id for h in top] != [h.product_id for h in anon]
    tensors = pipe.run_tensors({"customer": np.array([pipe.unknown], np.int64)})
    assert [pipe.product_ids[i] for i in tensors["items"][0][:5]] == [h.product_id for h in anon]


def test_bad_requests_name_what_was_wrong(demo_rec: TrainedModel) -> None:
    pipe = RecommendPipeline(demo_rec.config, demo_rec.files)
    with pytest.raises(InputError, match=r"customers\[1\]"):
        pipe.recommend(["a", 17], 5)  # type: ignore[list-item]
    with pytest.raises(InputError, match="k: expected"):
        pipe.recommend(["a"], pipe.max_k + 1)
    with pytest.raises(InputError, match="'customer'"):
        pipe.run_tensors({"customer": np.array([pipe.unknown + 1], np.int64)})


def test_index_graph_matches_numpy_top_k() -> None:
    rng = np.random.default_rng(0)
    users, items = rng.standard_normal((7, 4)), rng.standard_normal((30, 4))
    pop = rng.permutation(30).astype(np.float64)  # distinct, so the top-k order is unique
    ut, it = index_tables(users.astype(np.float32), items.astype(np.float32), pop)
    model = OnnxModel(index_to_onnx(ut, it, 5).SerializeToString())
    out = model.run({"customer": np.arange(8, dtype=np.int64)})
    want = np.argsort(-(ut @ it), axis=1)[:, :5]
    np.testing.assert_array_equal(out["items"], want)
    assert list(out["items"][7]) == list(np.argsort(-pop)[:5])


def test_als_reconstructs_block_structure() -> None:
    # Two groups of customers buying from two disjoint halves of the items.
    user = np.repeat(np.arange(20), 5)
    item = np.array([(u // 10) * 10 + (j * 3 + u) % 10 for u in range(20) for j in range(5)])
    users_f, items_f = train_als(AlsSpec(factors=4, iterations=8), user, item,
                                 np.ones(len(user), np.float32), 20, 20)
    scores = users_f @ items_f.T
    own = np.array([scores[u, (u // 10) * 10 : (u // 10) * 10 + 10].mean() for u in range(20)])
    other = np.array([scores[u, (1 - u // 10) * 10 : (1 - u // 10) * 10 + 10].mean()
                      for u in range(20)])
    assert (own > other + 0.3).all()


def test_training_refuses_purchases_without_customers(tmp_path: Path) -> None:
    t0 = dt.datetime(2026, 1, 1)
    table = pa.table({
        "invoice": ["1", "2"], "product_id": ["a", "b"],
        "timestamp": [t0, t0 + dt.timedelta(days=30)],
        "customer_id": pa.array([None, None], pa.string()),
    })
    with pytest.raises(InputError, match="no row has a customer_id"):
        train_recommender_table(table, tmp_path / "out")
    with pytest.raises(InputError, match="missing column 'timestamp'"):
        train_recommender_table(table.drop(["timestamp"]), tmp_path / "out")
    assert not (tmp_path / "out").exists()
