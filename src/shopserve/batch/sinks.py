"""Batch outputs: part files written atomically, then one final file or folder, also atomic.

Nothing appears under the final name until every row is in it; a crash leaves only parts.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from shopserve.batch.sources import FileFormat

ERRORS_KEY = b"shopserve.batch.errors"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def part_path(work: Path, index: int) -> Path:
    return work / f"part-{index:08d}.parquet"


def write_part(work: Path, index: int, table: pa.Table, errors: list[dict[str, object]]) -> None:
    """One self-contained file per chunk: its rows, and its bad rows in the file's metadata.

    The rename is what marks the chunk done. Parts are not fsynced (the final output is): a
    process crash cannot lose them, and after a machine crash ``done_parts`` re-checks them.
    """
    lines = b"".join(orjson.dumps(e) + b"\n" for e in errors)
    meta = dict(table.schema.metadata or {})
    meta[ERRORS_KEY] = lines
    tmp = work / f".part-{index:08d}.parquet.tmp-{os.getpid()}"
    pq.write_table(table.replace_schema_metadata(meta), tmp)
    os.replace(tmp, part_path(work, index))


def done_parts(work: Path) -> set[int]:
    """Indices of the parts that are complete; an unreadable part is removed and redone."""
    done = set()
    for path in work.glob("part-*.parquet"):
        try:
            pq.read_metadata(path)
        except (pa.ArrowInvalid, OSError):
            path.unlink()
            continue
        done.add(int(path.name[5:13]))
    return done


def read_parts(work: Path, count: int) -> Iterator[pa.Table]:
    for i in range(count):
        table = pq.read_table(part_path(work, i))
        yield table.replace_schema_metadata(_without_errors(table.schema.metadata))


def _without_errors(meta: dict[bytes, bytes] | None) -> dict[bytes, bytes] | None:
    if not meta:
        return None
    rest = {k: v for k, v in meta.items() if k != ERRORS_KEY and k != b"ARROW:schema"}
    return rest or None


def assemble(work: Path, count: int, output: Path, fmt: FileFormat | None,
             dir_format: FileFormat) -> int:
    """Join the parts in order under ``output`` (file or folder); returns rows written."""
    if fmt is None:
        return _assemble_dir(work, count, output, dir_format)
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    rows = _write_file(tmp, fmt, read_parts(work, count))
    os.replace(tmp, output)
    return rows


def _assemble_dir(work: Path, count: int, output: Path, fmt: FileFormat) -> int:
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rows = 0
    for i, table in enumerate(read_parts(work, count)):
        rows += _write_file(tmp / f"part-{i:05d}.{fmt.value}", fmt, [table])
    os.replace(tmp, output)
    return rows


def _write_file(path: Path, fmt: FileFormat, tables: Iterable[pa.Table]) -> int:
    """Empty parts (every row bad) are skipped; the first non-empty part sets the schema."""
    rows = 0
    writer: pq.ParquetWriter | pacsv.CSVWriter | None = None
    schema: pa.Schema | None = None
    with path.open("wb") as handle:
        for table in tables:
            if table.num_rows == 0:
                schema = schema or table.schema
                continue
            if fmt is FileFormat.JSONL:
                handle.write(b"".join(orjson.dumps(r) + b"\n" for r in table.to_pylist()))
            else:
                if writer is None:
                    schema = table.schema
                    writer = (pq.ParquetWriter(handle, schema) if fmt is FileFormat.PARQUET
                              else pacsv.CSVWriter(handle, schema))
                writer.write_table(table if table.schema == schema else table.cast(schema))
            rows += table.num_rows
        if writer is not None:
            writer.close()
        elif fmt is not FileFormat.JSONL and schema is not None:
            _write_empty(handle, fmt, schema)
        handle.flush()
        os.fsync(handle.fileno())
    return rows


def _write_empty(handle: object, fmt: FileFormat, schema: pa.Schema) -> None:
    if fmt is FileFormat.PARQUET:
        pq.write_table(schema.empty_table(), handle)
    else:
        pacsv.write_csv(schema.empty_table(), handle)


def merge_errors(work: Path, count: int, path: Path) -> int:
    """All chunks' bad rows, in row order, as one JSON Lines file (atomic)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    n = 0
    with tmp.open("wb") as out:
        for i in range(count):
            meta = pq.read_schema(part_path(work, i)).metadata or {}
            data = meta.get(ERRORS_KEY, b"")
            n += data.count(b"\n")
            out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    return n
