"""Real-file loaders: quirks of the real files, clear errors on bad ones, the real data itself."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shopserve import load_shop
from shopserve.data import (
    CATALOG_SCHEMA,
    CLICKS_SCHEMA,
    PURCHASES_SCHEMA,
    build_catalog,
    data_hash,
    iter_clicks,
    iter_judgments,
    iter_purchases,
    load_clicks,
    load_judgments,
    load_purchases,
)
from shopserve.errors import InputError, NotFoundError, UsageError

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_real = pytest.mark.skipif(
    not (REAL / "homedepot" / "train.csv").is_file(),
    reason=f"real shop data not found at {REAL} (see shared/data/README.md)",
)


def write_judgments(path: Path) -> Path:
    text = (
        "id,product_uid,product_title,search_term,relevance\n"
        "2,100001,Caf\xe9 table 12\xb0 angle,caf\xe9 table,3.0\n"
        "3,100002,\"Lamp, brass\",lamp,1.67\n"
    )
    path.write_bytes(text.encode("latin-1"))
    return path


def write_retail(path: Path, **overrides: pa.Array) -> Path:
    when = dt.datetime(2011, 1, 2, 10, 30)
    columns: dict[str, pa.Array] = {
        "InvoiceNo": pa.array(["536365", "C536379", "536366", "536367"]),
        "StockCode": pa.array(["85123A", "85123A", "71053", "22633"]),
        "Description": pa.array(["WHITE HEART", "WHITE HEART", "nan", "HAND WARMER"]),
        "Quantity": pa.array([6, -1, 2, 3]),
        "InvoiceDate": pa.array([when] * 4, type=pa.timestamp("ns")),
        "UnitPrice": pa.array([2.55, 2.55, 3.39, 1.85]),
        "CustomerID": pa.array([17850.0, 17850.0, None, 13047.0]),
        "Country": pa.array(["United Kingdom"] * 4),
    }
    columns.update(overrides)
    pq.write_table(pa.table(columns), path)
    return path


def write_clicks(path: Path, rows: list[str] | None = None) -> Path:
    header = "Id,Label," + ",".join(f"I{i}" for i in range(1, 14)) + ","
    header += ",".join(f"C{i}" for i in range(1, 27))
    numeric = ",".join(["1"] * 12 + [""])
    cats = ",".join(["68fd1e64"] * 25 + [""])
    rows = rows or [f"10,1,{numeric},{cats}", f"11,0,{numeric},{cats}"]
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_judgments_read_latin1_and_keep_string_ids(tmp_path: Path) -> None:
    table = load_judgments(write_judgments(tmp_path / "train.csv"))
    assert table.to_pylist() == [
        {"query": "café table", "product_id": "100001", "title": "Café table 12° angle",
         "relevance": 3.0},
        {"query": "lamp", "product_id": "100002", "title": "Lamp, brass", "relevance": 1.67},
    ]


def test_purchases_drop_cancellations_and_keep_null_customers(tmp_path: Path) -> None:
    table = load_purchases(write_retail(tmp_path / "retail.parquet"))
    assert table.schema.equals(PURCHASES_SCHEMA)
    assert table["invoice"].to_pylist() == ["536365", "536366", "536367"]
    assert table["customer_id"].to_pylist() == ["17850", None, "13047"]
    assert table["description"].to_pylist() == ["WHITE HEART", None, "HAND WARMER"]
    assert table["timestamp"][0].as_py() == dt.datetime(2011, 1, 2, 10, 30)


def test_purchases_accept_string_customer_ids(tmp_path: Path) -> None:
    ids = pa.array(["17850.0", "17850", None, "A-7"])
    table = load_purchases(write_retail(tmp_path / "r.parquet", CustomerID=ids))
    assert table["customer_id"].to_pylist() == ["17850", None, "A-7"]


def test_clicks_treat_empty_as_missing(tmp_path: Path) -> None:
    table = load_clicks(write_clicks(tmp_path / "clicks.csv"))
    assert table.schema.equals(CLICKS_SCHEMA)
    assert table["label"].to_pylist() == [1, 0]
    assert table["I13"].to_pylist() == [None, None]
    assert table["C26"].to_pylist() == [None, None]
    assert table["C1"].to_pylist() == ["68fd1e64", "68fd1e64"]


def test_streams_yield_record_batches(tmp_path: Path) -> None:
    batches = list(iter_clicks(write_clicks(tmp_path / "c.csv")))
    assert all(isinstance(b, pa.RecordBatch) for b in batches)
    assert sum(b.num_rows for b in batches) == 2
    assert all(isinstance(b, pa.RecordBatch)
               for b in iter_purchases(write_retail(tmp_path / "r.parquet")))


def test_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("id,product_uid,product_title,relevance\n1,2,x,3\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"train\.csv.*missing column\(s\) \['search_term'\]"):
        list(iter_judgments(path))
    retail = tmp_path / "r.parquet"
    pq.write_table(pa.table({"InvoiceNo": ["1"]}), retail)
    with pytest.raises(UsageError, match=r"r\.parquet.*'StockCode'"):
        list(iter_purchases(retail))


def test_bad_values_name_the_file_and_column(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("id,product_uid,product_title,search_term,relevance\n"
                    "1,2,x,y,7.5\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"train\.csv.*'relevance'.*outside 1\.0-3\.0"):
        load_judgments(path)
    numeric = ",".join(["oops"] + ["1"] * 12)
    cats = ",".join(["a"] * 26)
    clicks = write_clicks(tmp_path / "c.csv", rows=[f"1,0,{numeric},{cats}"])
    with pytest.raises(InputError, match=r"c\.csv.*I1"):
        load_clicks(clicks)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"nope\.csv"):
        load_clicks(tmp_path / "nope.csv")
    bogus = tmp_path / "bogus.parquet"
    bogus.write_bytes(b"not parquet at all")
    with pytest.raises(UsageError, match=r"bogus\.parquet.*not a readable Parquet"):
        load_purchases(bogus)
    with pytest.raises(NotFoundError, match="homedepot"):
        load_shop(tmp_path)


def test_load_shop_from_a_folder_of_the_same_shape(tmp_path: Path) -> None:
    for sub in ("homedepot", "online-retail", "criteo-sample"):
        (tmp_path / sub).mkdir()
    write_judgments(tmp_path / "homedepot" / "train.csv")
    write_retail(tmp_path / "online-retail" / "online_retail.parquet")
    write_clicks(tmp_path / "criteo-sample" / "train.tiny.csv")
    shop = load_shop(tmp_path)
    assert shop.catalog.schema.equals(CATALOG_SCHEMA)
    assert sorted(shop.catalog["product_id"].to_pylist()) == [
        "100001", "100002", "22633", "71053", "85123A"]
    rows = {r["product_id"]: r for r in shop.catalog.to_pylist()}
    assert rows["85123A"]["title"] == "WHITE HEART" and rows["85123A"]["price"] == 2.55
    assert rows["71053"]["title"] is None
    assert build_catalog(shop.judgments, shop.purchases).equals(shop.catalog)


@needs_real
def test_real_files_load_with_their_quirks_handled() -> None:
    shop = load_shop(REAL)
    assert shop.judgments.num_rows == 59497
    assert shop.clicks.num_rows == 1999
    purchases = shop.purchases
    assert not any(i.startswith("C") for i in purchases["invoice"].to_pylist())
    assert 0.2 < purchases["customer_id"].null_count / purchases.num_rows < 0.3
    assert "nan" not in set(purchases["description"].to_pylist())
    assert "17850" in set(purchases["customer_id"].to_pylist())
    rel = shop.judgments["relevance"].to_numpy()
    assert rel.min() >= 1.0 and rel.max() <= 3.0


@needs_real
def test_real_file_hash_matches_the_published_one() -> None:
    expected = "68f7852149b089e7929ba9e1acd6debbc986cbd498107a7c4dc9f2e716500b18"
    assert data_hash(REAL / "criteo-sample" / "train.tiny.csv") == f"sha256:{expected}"
