"""The purchase-history CTR set: a time split without leakage, honest negatives, learning."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from shopserve.data import DemoShopSpec, Shop, generate_demo_shop
from shopserve.errors import InputError
from shopserve.models import train_ctr_table
from shopserve.models.purchase_ctr import NUMERIC, PurchaseCtrSpec, build_purchase_ctr

SPEC = PurchaseCtrSpec(cutoff=dt.datetime(2026, 1, 26), label_weeks=1, negatives=3)


@pytest.fixture(scope="module")
def shop() -> Shop:
    return generate_demo_shop(DemoShopSpec(seed=0, products=300, customers=150, weeks=5,
                                           ctr_rows=10))


def _pairs(table: pa.Table) -> list[tuple[str, str]]:
    return list(zip(table["customer_id"].to_pylist(), table["product_id"].to_pylist(),
                    strict=True))


def _window(shop: Shop) -> pa.Table:
    ts = shop.purchases["timestamp"]
    start = pa.scalar(SPEC.cutoff, pa.timestamp("us"))
    end = pa.scalar(SPEC.cutoff + dt.timedelta(weeks=1), pa.timestamp("us"))
    return shop.purchases.filter(pc.and_(pc.greater_equal(ts, start), pc.less(ts, end)))


def test_labels_follow_the_window_and_negatives_were_never_bought(shop: Shop) -> None:
    table = build_purchase_ctr(shop.purchases, SPEC, shop.catalog)
    labels = table["label"].to_numpy()
    assert 0.2 < labels.mean() < 0.35 and table.num_rows > 300
    bought = set(_pairs(_window(shop).filter(pc.is_valid(_window(shop)["customer_id"]))))
    pairs = _pairs(table)
    assert len(set(pairs)) == len(pairs)  # each pair once
    assert all((pair in bought) == bool(y) for pair, y in zip(pairs, labels, strict=True))
    assert table.schema.names[:1 + len(NUMERIC)] == ["label", *NUMERIC]
    again = build_purchase_ctr(shop.purchases, SPEC, shop.catalog)
    assert again.equals(table)


def test_features_use_only_purchases_before_the_cutoff(shop: Shop) -> None:
    table = build_purchase_ctr(shop.purchases, SPEC, shop.catalog)
    # Rewrite everything from the cutoff on: other prices and quantities, more purchases.
    ts = shop.purchases["timestamp"]
    late = pc.greater_equal(ts, pa.scalar(SPEC.cutoff, pa.timestamp("us")))
    changed = shop.purchases.set_column(
        4, "unit_price", pc.if_else(late, pc.multiply(shop.purchases["unit_price"], 10.0),
                                    shop.purchases["unit_price"]))
    changed = pa.concat_tables([changed, changed.filter(late)])
    other = build_purchase_ctr(changed, SPEC, shop.catalog)
    mine = dict(zip(_pairs(table), table.select(list(NUMERIC)).to_pylist(), strict=True))
    theirs = dict(zip(_pairs(other), other.select(list(NUMERIC)).to_pylist(), strict=True))
    shared = set(mine) & set(theirs)
    assert len(shared) > 100
    assert all(mine[pair] == theirs[pair] for pair in shared)
    # Counted from the history alone: recency is never negative, counts never include the window.
    assert pc.min(table["customer_days_since"]).as_py() >= 0
    assert pc.min(table["product_days_since"]).as_py() >= 0
    positives = table.filter(pc.equal(table["label"], 1))
    assert pc.min(positives["product_customers"]).as_py() >= 1


def test_demo_purchase_ctr_learns_and_keeps_up_with_logistic_regression(
    shop: Shop, tmp_path: Path,
) -> None:
    spec = PurchaseCtrSpec(label_weeks=1)
    model = train_ctr_table(build_purchase_ctr(shop.purchases, spec, shop.catalog), tmp_path)
    assert model.metrics["auc"] > 0.75
    assert model.metrics["auc"] > model.metrics["baseline_auc"] - 0.01


def test_refuses_a_cutoff_with_nothing_after_it(shop: Shop) -> None:
    with pytest.raises(InputError, match="both sides of the cutoff"):
        build_purchase_ctr(shop.purchases, PurchaseCtrSpec(cutoff=dt.datetime(2030, 1, 1)))
    with pytest.raises(InputError, match="lack the columns"):
        build_purchase_ctr(shop.purchases.drop_columns(["customer_id"]))
    assert np.isfinite(build_purchase_ctr(shop.purchases)["price"].to_numpy()).all()
