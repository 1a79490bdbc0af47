"""The reference models on the real data in ``../shared/data`` (skipped where it is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopserve.data import load_clicks, load_purchases
from shopserve.models import CtrTrainSpec, train_ctr_table
from shopserve.models.recommend import RecommendTrainSpec, train_recommender_table

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CRITEO = DATA / "criteo-sample" / "train.tiny.csv"
RETAIL = DATA / "online-retail" / "online_retail.parquet"


@pytest.mark.slow
@pytest.mark.skipif(not CRITEO.is_file(), reason=f"real data not present at {CRITEO}")
def test_ctr_on_criteo_sample_learns(tmp_path: Path) -> None:
    model = train_ctr_table(load_clicks(CRITEO), tmp_path, CtrTrainSpec())
    # 1,999 rows: the FM and the logistic baseline are within noise of each other here.
    assert model.metrics["auc"] > 0.62
    assert model.metrics["baseline_auc"] > 0.62
    assert model.metrics["rows"] == 399


@pytest.mark.slow
@pytest.mark.skipif(not RETAIL.is_file(), reason=f"real data not present at {RETAIL}")
def test_recommender_on_online_retail_beats_popularity(tmp_path: Path) -> None:
    spec = RecommendTrainSpec(test_weeks=4)
    model = train_recommender_table(load_purchases(RETAIL), tmp_path, spec)
    m = model.metrics
    assert m["customers"] > 500
    assert m["recall_at_20"] > 2 * m["baseline_popularity_recall_at_20"]
    assert m["ndcg_at_20"] > 1.5 * m["baseline_popularity_ndcg_at_20"]
    assert m["recall_at_20"] > 0.8 * m["baseline_cooccurrence_recall_at_20"]
