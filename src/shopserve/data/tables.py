"""The normalized shop tables every loader returns, the ``Shop`` that holds them, and hashing.

The demo generator and the real-file loaders both produce exactly these schemas, so that
training, evaluation and batch jobs never care where the rows came from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from shopserve.errors import NotFoundError, UsageError

CATALOG_SCHEMA = pa.schema(
    [
        pa.field("product_id", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("category", pa.string()),
        pa.field("brand", pa.string()),
        pa.field("price", pa.float64()),
    ]
)

JUDGMENTS_SCHEMA = pa.schema(
    [
        pa.field("query", pa.string(), nullable=False),
        pa.field("product_id", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("relevance", pa.float64(), nullable=False),
    ]
)

PURCHASES_SCHEMA = pa.schema(
    [
        pa.field("invoice", pa.string(), nullable=False),
        pa.field("product_id", pa.string(), nullable=False),
        pa.field("description", pa.string()),
        pa.field("quantity", pa.int64()),
        pa.field("unit_price", pa.float64()),
        pa.field("timestamp", pa.timestamp("us")),
        pa.field("customer_id", pa.string()),
        pa.field("country", pa.string()),
    ]
)

CLICK_NUMERIC = tuple(f"I{i}" for i in range(1, 14))
CLICK_CATEGORICAL = tuple(f"C{i}" for i in range(1, 27))

CLICKS_SCHEMA = pa.schema(
    [pa.field("label", pa.int64(), nullable=False)]
    + [pa.field(name, pa.float64()) for name in CLICK_NUMERIC]
    + [pa.field(name, pa.string()) for name in CLICK_CATEGORICAL]
)


@dataclass(frozen=True)
class Shop:
    """One shop's data as four normalized tables (see ``docs/contracts.md``)."""

    catalog: pa.Table
    judgments: pa.Table
    purchases: pa.Table
    clicks: pa.Table

    def __post_init__(self) -> None:
        for name, schema in (
            ("catalog", CATALOG_SCHEMA),
            ("judgments", JUDGMENTS_SCHEMA),
            ("purchases", PURCHASES_SCHEMA),
            ("clicks", CLICKS_SCHEMA),
        ):
            table = getattr(self, name)
            if not table.schema.equals(schema):
                raise UsageError(
                    f"Shop.{name}: schema does not match the normalized {name} schema; "
                    f"got {table.schema.names}, expected {schema.names}"
                )

    def summary(self) -> dict[str, int]:
        """Row counts per table, for logs and CLI output."""
        return {
            "catalog": self.catalog.num_rows,
            "judgments": self.judgments.num_rows,
            "purchases": self.purchases.num_rows,
            "clicks": self.clicks.num_rows,
        }


def data_hash(source: pa.Table | pa.RecordBatch | Path | str) -> str:
    """``"sha256:<hex>"`` of a table's contents, a file's bytes, or a directory's files.

    A table is hashed through its Arrow IPC form after combining chunks, so the same rows give
    the same hash however they were read in pieces.
    """
    digest = hashlib.sha256()
    if isinstance(source, pa.RecordBatch):
        source = pa.Table.from_batches([source])
    if isinstance(source, pa.Table):
        table = source.combine_chunks()
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            for batch in table.to_batches():
                writer.write_batch(batch)
        digest.update(sink.getvalue().to_pybytes())
        return f"sha256:{digest.hexdigest()}"
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            digest.update(str(file.relative_to(path)).encode("utf-8") + b"\0")
            _hash_file(file, digest)
    elif path.is_file():
        _hash_file(path, digest)
    else:
        raise NotFoundError(f"{path}: no such file or directory to hash")
    return f"sha256:{digest.hexdigest()}"


def _hash_file(path: Path, digest: hashlib._Hash) -> None:
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
