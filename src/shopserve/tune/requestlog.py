"""Request logs for the cache simulation: streamed from Parquet, CSV or JSON Lines, or made from
the demo shop (Zipf-skewed queries with Poisson arrivals).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from shopserve.errors import InputError, NotFoundError

BATCH_ROWS = 65_536
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl",
           ".ndjson": "jsonl", ".json": "jsonl"}
Batch = tuple[list[str], list[float]]


def log_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unknown log format {path.suffix!r}; expected one of "
                         f"{sorted(FORMATS)}")
    if not path.is_file():
        raise NotFoundError(f"{path}: no such request log")
    return fmt


def iter_requests(path: Path, key_column: str, time_column: str) -> Iterator[Batch]:
    """(keys, times in seconds) in batches, in log order; bad rows raise ``InputError``."""
    fmt = log_format(path)
    last = -np.inf
    row = 0
    batches = (_jsonl_batches(path, key_column, time_column) if fmt == "jsonl"
               else _arrow_batches(path, fmt))
    for batch in batches:
        keys, times = _columns(path, batch, key_column, time_column, row)
        if len(times):
            if times[0] < last or np.any(np.diff(times) < 0):
                bad = row + (0 if times[0] < last else int(np.argmax(np.diff(times) < 0)) + 1)
                raise InputError(f"{path}: row {bad + 1}: timestamps must not go backwards; "
                                 f"sort the log by {time_column!r} first")
            last = float(times[-1])
        row += len(keys)
        yield keys, times.tolist()
    if row == 0:
        raise InputError(f"{path}: the log has no requests")


def _arrow_batches(path: Path, fmt: str) -> Iterator[pa.RecordBatch]:
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            file = pq.ParquetFile(path)
            file.schema_arrow.names  # noqa: B018  column names that are not UTF-8 fail here
            yield from file.iter_batches(batch_size=BATCH_ROWS)
        else:
            import pyarrow.csv as pcsv

            reader = pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=1 << 22))
            reader.schema.names  # noqa: B018  a header that is not UTF-8 fails here
            yield from reader
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable {fmt} request log: {exc}") from exc


def _jsonl_batches(path: Path, key_column: str, time_column: str) -> Iterator[dict[str, Any]]:
    rows: dict[str, list[Any]] = {key_column: [], time_column: []}
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise InputError(f"{path}: line {number} is not JSON: {exc}") from exc
            if not isinstance(record, dict):
                raise InputError(f"{path}: line {number} is not a JSON object")
            for name in rows:
                if name not in record:
                    raise InputError(f"{path}: line {number} has no {name!r} field; it has "
                                     f"{sorted(record)}")
                rows[name].append(record[name])
            if len(rows[key_column]) >= BATCH_ROWS:
                yield rows
                rows = {key_column: [], time_column: []}
    if rows[key_column]:
        yield rows


def _columns(path: Path, batch: pa.RecordBatch | dict[str, Any], key_column: str,
             time_column: str, first_row: int) -> tuple[list[str], np.ndarray]:
    names = batch.schema.names if isinstance(batch, pa.RecordBatch) else list(batch)
    for name, flag in ((key_column, "--key-column"), (time_column, "--time-column")):
        if name not in names:
            raise InputError(f"{path}: no column {name!r} (choose one with {flag}); the log has "
                             f"{names}")
        if names.count(name) > 1:
            raise InputError(f"{path}: column {name!r} appears {names.count(name)} times")
    try:
        keys = pa.array(batch[key_column])
        stamps = pa.array(batch[time_column])
        keys = pc.cast(keys, pa.string()) if keys.type != pa.null() else keys
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError,
            OverflowError) as exc:
        raise InputError(f"{path}: rows from {first_row + 1}: {key_column!r} and "
                         f"{time_column!r} need plain values of one type: {exc}") from exc
    for name, empty in ((key_column, pc.fill_null(pc.equal(keys, ""), True)),
                        (time_column, pc.is_null(stamps))):
        if pc.any(empty).as_py():
            bad = first_row + int(pc.index(empty, True).as_py()) + 1
            raise InputError(f"{path}: row {bad}: {name!r} is empty")
    return keys.to_pylist(), _seconds(path, stamps, time_column)


def _seconds(path: Path, stamps: pa.Array, name: str) -> np.ndarray:
    """Timestamps as seconds: timestamp types, ISO-8601 strings or plain numbers of seconds."""
    kind = stamps.type
    try:
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            stamps = pc.cast(stamps, pa.timestamp("us"))
            kind = stamps.type
        if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
            micros = pc.cast(pc.cast(stamps, pa.timestamp("us")), pa.int64())
            return np.asarray(micros.to_numpy(zero_copy_only=False), dtype=np.float64) / 1e6
        if pa.types.is_integer(kind) or pa.types.is_floating(kind):
            values = np.asarray(stamps.to_numpy(zero_copy_only=False), dtype=np.float64)
            if not np.all(np.isfinite(values)):
                raise InputError(f"{path}: {name!r} holds a value that is not a finite number")
            return values
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(f"{path}: {name!r} must hold timestamps, ISO-8601 strings or seconds: "
                         f"{exc}") from exc
    raise InputError(f"{path}: {name!r} has type {kind}; expected timestamps, ISO-8601 strings "
                     "or numbers of seconds")


def demo_log(requests: int, rate_rps: float, seed: int = 0, zipf: float = 1.0,
             products: int = 2000) -> pa.Table:
    """A search log from the demo shop: (query, timestamp), Zipf-skewed over its queries."""
    from shopserve.data import DemoShopSpec, generate_demo_shop

    if requests < 1 or not rate_rps > 0:
        raise InputError(f"a demo log needs requests ≥ 1 and a positive rate, got {requests} "
                         f"and {rate_rps}")
    shop = generate_demo_shop(DemoShopSpec(seed=seed, products=products, queries=100,
                                           customers=50, weeks=1, ctr_rows=10))
    titles = shop.catalog.column("title").to_pylist()
    universe = sorted({q.lower() for q in shop.judgments.column("query").to_pylist()}
                      | {" ".join(t.lower().split()[1:]) for t in titles}
                      | {t.lower() for t in titles})
    rng = np.random.default_rng(seed)
    rng.shuffle(universe)
    weights = 1.0 / np.arange(1, len(universe) + 1) ** zipf
    picks = rng.choice(len(universe), size=requests, p=weights / weights.sum())
    gaps = rng.exponential(1.0 / rate_rps, size=requests)
    micros = (np.cumsum(gaps) * 1e6).astype(np.int64) + 1_795_000_000_000_000
    return pa.table({"query": pa.array([universe[i] for i in picks], pa.string()),
                     "timestamp": pa.array(micros, pa.timestamp("us"))})
