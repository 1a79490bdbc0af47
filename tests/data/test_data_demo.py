"""The demo shop: deterministic by seed, normalized schemas, and data a model can learn from."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pydantic import ValidationError

from shopserve import DemoShopSpec, Shop, generate_demo_shop
from shopserve.data import (
    CATALOG_SCHEMA,
    CLICKS_SCHEMA,
    JUDGMENTS_SCHEMA,
    PURCHASES_SCHEMA,
    data_hash,
)
from shopserve.errors import NotFoundError, UsageError


@pytest.fixture(scope="module")
def shop() -> Shop:
    return generate_demo_shop(DemoShopSpec.small())


def test_same_seed_same_bytes_other_seed_other_data(shop: Shop) -> None:
    again = generate_demo_shop(DemoShopSpec.small())
    other = generate_demo_shop(DemoShopSpec.small(seed=1))
    for name in ("catalog", "judgments", "purchases", "clicks"):
        assert data_hash(getattr(shop, name)) == data_hash(getattr(again, name)), name
        assert data_hash(getattr(shop, name)) != data_hash(getattr(other, name)), name


def test_schemas_and_sizes_follow_the_spec(shop: Shop) -> None:
    spec = DemoShopSpec.small()
    assert shop.catalog.schema.equals(CATALOG_SCHEMA)
    assert shop.judgments.schema.equals(JUDGMENTS_SCHEMA)
    assert shop.purchases.schema.equals(PURCHASES_SCHEMA)
    assert shop.clicks.schema.equals(CLICKS_SCHEMA)
    assert shop.catalog.num_rows == spec.products
    assert shop.clicks.num_rows == spec.ctr_rows
    assert shop.judgments.num_rows == spec.queries * spec.judgments_per_query
    assert pc.count_distinct(shop.catalog["product_id"]).as_py() == spec.products
    assert shop.summary()["purchases"] == shop.purchases.num_rows > 0


def test_ids_are_strings_and_guests_have_null_customer(shop: Shop) -> None:
    customers = shop.purchases["customer_id"]
    assert pa.types.is_string(customers.type)
    assert 0 < customers.null_count < shop.purchases.num_rows
    known = set(shop.catalog["product_id"].to_pylist())
    assert set(shop.purchases["product_id"].to_pylist()) <= known
    assert set(shop.judgments["product_id"].to_pylist()) <= known


def test_relevance_is_graded_and_follows_word_overlap(shop: Shop) -> None:
    rel = shop.judgments["relevance"].to_numpy()
    assert rel.min() >= 1.0 and rel.max() <= 3.0
    assert len(np.unique(rel)) >= 5
    overlap = [
        len(set(q.split()) & set(t.lower().split())) / len(q.split())
        for q, t in zip(shop.judgments["query"].to_pylist(),
                        shop.judgments["title"].to_pylist(), strict=True)
    ]
    assert np.corrcoef(overlap, rel)[0, 1] > 0.7


def test_purchases_are_skewed_and_repeat(shop: Shop) -> None:
    counts = pc.value_counts(shop.purchases["product_id"]).field("counts").to_numpy()
    top_share = np.sort(counts)[::-1][: len(counts) // 10].sum() / counts.sum()
    assert top_share > 0.3  # a Zipf tail: the top tenth of items sells far more than a tenth
    pairs = pa.table({"c": shop.purchases["customer_id"], "p": shop.purchases["product_id"]})
    pairs = pairs.filter(pc.is_valid(pairs["c"]))
    grouped = pairs.group_by(["c", "p"]).aggregate([("p", "count")])
    assert pc.max(grouped["p_count"]).as_py() >= 2


def test_click_labels_depend_on_features(shop: Shop) -> None:
    labels = shop.clicks["label"].to_numpy()
    assert 0.1 < labels.mean() < 0.4
    i1 = np.nan_to_num(shop.clicks["I1"].to_numpy(zero_copy_only=False), nan=0.0)
    ranks = np.argsort(np.argsort(i1, kind="stable"))
    pos = labels == 1
    auc = (ranks[pos].sum() - pos.sum() * (pos.sum() - 1) / 2) / (pos.sum() * (~pos).sum())
    assert auc > 0.58
    assert shop.clicks["I12"].null_count > 0 and shop.clicks["C20"].null_count > 0


def test_bad_spec_is_refused_with_the_field_named() -> None:
    with pytest.raises(ValidationError, match="products"):
        DemoShopSpec(products=3)
    with pytest.raises(ValidationError, match="judgments_per_query"):
        DemoShopSpec(products=10, judgments_per_query=20)


def test_shop_refuses_tables_of_the_wrong_shape(shop: Shop) -> None:
    with pytest.raises(UsageError, match=r"Shop\.clicks"):
        Shop(shop.catalog, shop.judgments, shop.purchases, shop.clicks.drop_columns(["C26"]))


def test_data_hash_of_files_and_folders(tmp_path: pytest.TempPathFactory, shop: Shop) -> None:
    from pathlib import Path

    root = Path(str(tmp_path))
    (root / "a.txt").write_bytes(b"abc")
    digest = data_hash(root / "a.txt")
    assert digest == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    folder_hash = data_hash(root)
    (root / "b.txt").write_bytes(b"x")
    assert data_hash(root) != folder_hash
    assert data_hash(shop.clicks) == data_hash(pa.Table.from_batches(shop.clicks.to_batches(100)))
    with pytest.raises(NotFoundError, match="nowhere"):
        data_hash(root / "nowhere")
