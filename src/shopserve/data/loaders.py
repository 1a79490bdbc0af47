"""Loaders for real shop files (Home Depot judgments, Online Retail purchases, Criteo clicks).

Each ``iter_*`` streams normalized ``pyarrow.RecordBatch``es, so large files never load whole;
each ``load_*`` collects its stream into a table. Quirks of the real files are handled here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from shopserve.data.tables import (
    CATALOG_SCHEMA,
    CLICK_CATEGORICAL,
    CLICK_NUMERIC,
    CLICKS_SCHEMA,
    JUDGMENTS_SCHEMA,
    PURCHASES_SCHEMA,
    Shop,
)
from shopserve.errors import InputError, NotFoundError, UsageError

BATCH_BYTES = 4 << 20
JUDGMENTS_FILE = Path("homedepot/train.csv")
PURCHASES_FILE = Path("online-retail/online_retail.parquet")
CLICKS_FILE = Path("criteo-sample/train.tiny.csv")

_JUDGMENT_COLUMNS = ("product_uid", "product_title", "search_term", "relevance")
_RETAIL_COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate",
                   "UnitPrice", "CustomerID", "Country")
_CLICK_COLUMNS = ("Label", *CLICK_NUMERIC, *CLICK_CATEGORICAL)


def _require_file(path: Path) -> Path:
    if not path.is_file():
        raise NotFoundError(f"{path}: no such file")
    return path


def _require_columns(path: Path, have: list[str], want: tuple[str, ...]) -> None:
    missing = [c for c in want if c not in have]
    if missing:
        raise UsageError(f"{path}: missing column(s) {missing}; found {have}")
    twice = [c for c in want if have.count(c) > 1]
    if twice:
        raise UsageError(f"{path}: column(s) {twice} appear more than once")


def _name_column(message: str, names: list[str]) -> str:
    """Arrow says "CSV column #2"; say which column that is."""
    match = re.search(r"column #(\d+)", message)
    if match and int(match.group(1)) < len(names):
        return f"column {names[int(match.group(1))]!r}: {message}"
    return message


def _open_csv(
    path: Path, want: tuple[str, ...], types: dict[str, pa.DataType], encoding: str = "utf8"
) -> Iterator[pa.RecordBatch]:
    _require_file(path)
    convert = pacsv.ConvertOptions(
        column_types=types, include_columns=list(want), strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    header = pacsv.ReadOptions(encoding=encoding, block_size=1 << 16)
    try:
        names = pacsv.open_csv(path, read_options=header).schema.names
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not a readable CSV file: {exc}") from exc
    _require_columns(path, names, want)
    opts = pacsv.ReadOptions(encoding=encoding, block_size=BATCH_BYTES)
    try:
        reader = pacsv.open_csv(path, read_options=opts, convert_options=convert)
    except pa.ArrowInvalid as exc:
        raise InputError(f"{path}: {_name_column(str(exc), names)}") from exc
    return _stream(path, reader, names)


def _stream(
    path: Path, reader: Iterator[pa.RecordBatch], names: list[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """Translate Arrow's errors mid-stream into an ``InputError`` naming file and column."""
    try:
        yield from reader
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: {_name_column(str(exc), names or [])}") from exc


def iter_judgments(path: Path) -> Iterator[pa.RecordBatch]:
    """Home Depot style ``train.csv`` (latin-1) as ``query, product_id, title, relevance``."""
    types = {"product_uid": pa.string(), "product_title": pa.string(),
             "search_term": pa.string(), "relevance": pa.float64()}
    reader = _open_csv(Path(path), _JUDGMENT_COLUMNS, types, encoding="latin-1")
    for batch in reader:
        relevance = batch.column("relevance")
        bad = pc.sum(pc.or_kleene(pc.is_null(relevance), pc.or_(
            pc.less(relevance, 1.0), pc.greater(relevance, 3.0)))).as_py() or 0
        if bad:
            raise InputError(f"{path}: column 'relevance' has {bad} value(s) outside 1.0-3.0")
        for name in ("search_term", "product_uid"):
            if batch.column(name).null_count:
                raise InputError(f"{path}: column {name!r} has empty values")
        yield pa.RecordBatch.from_arrays(
            [batch.column("search_term"), batch.column("product_uid"),
             batch.column("product_title"), relevance],
            schema=JUDGMENTS_SCHEMA,
        )


def iter_purchases(path: Path) -> Iterator[pa.RecordBatch]:
    """Online Retail style Parquet as normalized purchases, cancellations removed."""
    path = Path(path)
    _require_file(path)
    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UsageError(f"{path}: not a readable Parquet file: {exc}") from exc
    _require_columns(path, file.schema_arrow.names, _RETAIL_COLUMNS)
    batches = file.iter_batches(batch_size=65536, columns=list(_RETAIL_COLUMNS))
    for batch in _stream(path, batches):
        yield _normalize_purchases(path, batch)


def _as_string(column: pa.Array) -> pa.Array:
    """Ids as strings: ``17850.0`` -> ``"17850"``, strings kept, nulls kept."""
    if pa.types.is_floating(column.type):
        return pc.cast(pc.cast(column, pa.int64()), pa.string())
    if pa.types.is_integer(column.type):
        return pc.cast(column, pa.string())
    text = pc.cast(column, pa.string())
    return pc.replace_substring_regex(text, pattern=r"^(\d+)\.0$", replacement=r"\1")


def _normalize_purchases(path: Path, batch: pa.RecordBatch) -> pa.RecordBatch:
    try:
        invoice = _as_string(batch.column("InvoiceNo"))
        keep = pc.invert(pc.fill_null(pc.starts_with(invoice, "C"), False))
        description = pc.cast(batch.column("Description"), pa.string())
        description = pc.if_else(pc.equal(description, "nan"), None, description)
        arrays = [
            invoice,
            _as_string(batch.column("StockCode")),
            description,
            pc.cast(batch.column("Quantity"), pa.int64()),
            pc.cast(batch.column("UnitPrice"), pa.float64()),
            pc.cast(batch.column("InvoiceDate"), pa.timestamp("us")),
            _as_string(batch.column("CustomerID")),
            pc.cast(batch.column("Country"), pa.string()),
        ]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(f"{path}: cannot read purchases: {exc}") from exc
    for name, array in zip(("InvoiceNo", "StockCode"), arrays[:2], strict=True):
        if array.null_count:
            raise InputError(f"{path}: column {name!r} has empty values")
    out = pa.RecordBatch.from_arrays(arrays, schema=PURCHASES_SCHEMA)
    return out.filter(keep)


def iter_clicks(path: Path) -> Iterator[pa.RecordBatch]:
    """Criteo style CSV (``Label, I1..I13, C1..C26``; empty = missing) as normalized clicks."""
    types: dict[str, pa.DataType] = {"Label": pa.int64()}
    types.update({name: pa.float64() for name in CLICK_NUMERIC})
    types.update({name: pa.string() for name in CLICK_CATEGORICAL})
    reader = _open_csv(Path(path), _CLICK_COLUMNS, types)
    for batch in reader:
        if batch.column("Label").null_count:
            raise InputError(f"{path}: column 'Label' has empty values")
        yield pa.RecordBatch.from_arrays(batch.columns, schema=CLICKS_SCHEMA)


def _collect(batches: Iterator[pa.RecordBatch], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_batches(list(batches), schema=schema).combine_chunks()


def load_judgments(path: Path) -> pa.Table:
    return _collect(iter_judgments(path), JUDGMENTS_SCHEMA)


def load_purchases(path: Path) -> pa.Table:
    return _collect(iter_purchases(path), PURCHASES_SCHEMA)


def load_clicks(path: Path) -> pa.Table:
    return _collect(iter_clicks(path), CLICKS_SCHEMA)


def build_catalog(judgments: pa.Table, purchases: pa.Table) -> pa.Table:
    """One row per product seen in judgments or purchases: its title and median unit price.

    Real files carry no category or brand, so those stay null rather than being invented.
    """
    searched = judgments.group_by("product_id", use_threads=False).aggregate(
        [("title", "first")]
    ).rename_columns(["product_id", "title"])
    bought = purchases.group_by("product_id", use_threads=False).aggregate(
        [("description", "first"), ("unit_price", "approximate_median")]
    ).rename_columns(["product_id", "title", "price"])
    null_text = pa.nulls(searched.num_rows, pa.string())
    searched_rows = pa.table(
        [searched["product_id"], searched["title"], null_text, null_text,
         pa.nulls(searched.num_rows, pa.float64())], schema=CATALOG_SCHEMA)
    bought = bought.filter(pc.invert(pc.is_in(bought["product_id"], searched["product_id"])))
    bought_nulls = pa.nulls(bought.num_rows, pa.string())
    bought_rows = pa.table(
        [bought["product_id"], bought["title"], bought_nulls, bought_nulls, bought["price"]],
        schema=CATALOG_SCHEMA)
    return pa.concat_tables([searched_rows, bought_rows]).combine_chunks()


def load_shop(path: Path) -> Shop:
    """A ``Shop`` from a folder laid out like ``shared/data`` (or a user's files of that shape)."""
    root = Path(path)
    if not root.is_dir():
        raise NotFoundError(f"{root}: no such data folder")
    for rel in (JUDGMENTS_FILE, PURCHASES_FILE, CLICKS_FILE):
        if not (root / rel).is_file():
            raise NotFoundError(
                f"{root / rel}: missing; a shop folder holds {JUDGMENTS_FILE}, "
                f"{PURCHASES_FILE} and {CLICKS_FILE}"
            )
    judgments = load_judgments(root / JUDGMENTS_FILE)
    purchases = load_purchases(root / PURCHASES_FILE)
    clicks = load_clicks(root / CLICKS_FILE)
    catalog = build_catalog(judgments, purchases)
    return Shop(catalog=catalog, judgments=judgments, purchases=purchases, clicks=clicks)
