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
from shopserve.errors import UsageError

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


def read_part(path: Path) -> tuple[pa.Table, bytes]:
    """A part's rows and its bad rows (JSON Lines), in one read of the file."""
    table = pq.ParquetFile(path).read()
    meta = table.schema.metadata or {}
    rest = {k: v for k, v in meta.items() if k != ERRORS_KEY}
    return table.replace_schema_metadata(rest or None), meta.get(ERRORS_KEY, b"")


def publish(work: Path, count: int, output: Path, fmt: FileFormat | None,
            dir_format: FileFormat, errors_path: Path) -> tuple[int, int]:
    """Join the parts in order under ``output`` (one file, or a folder of parts when ``fmt`` is
    None) and their bad rows into ``errors_path``; both atomic. Returns (rows, bad rows)."""
    tmp_errors = errors_path.with_name(f".{errors_path.name}.tmp-{os.getpid()}")
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    try:
        result = _publish_into(work, count, tmp, fmt, dir_format, tmp_errors)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        tmp_errors.unlink(missing_ok=True)
        raise UsageError(f"{output}: the rows cannot be written as "
                         f"{(fmt or dir_format).value}: {exc}") from exc
    os.replace(tmp, output)
    os.replace(tmp_errors, errors_path)
    return result


def _publish_into(work: Path, count: int, tmp: Path, fmt: FileFormat | None,
                  dir_format: FileFormat, tmp_errors: Path) -> tuple[int, int]:
    bad = 0
    with tmp_errors.open("wb") as errors:

        def tables() -> Iterator[pa.Table]:
            nonlocal bad
            for i in range(count):
                table, lines = read_part(part_path(work, i))
                bad += lines.count(b"\n")
                errors.write(lines)
                yield table

        if fmt is None:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            rows = sum(_write_file(tmp / f"part-{i:05d}.{dir_format.value}", dir_format, [t])
                       for i, t in enumerate(tables()))
        else:
            rows = _write_file(tmp, fmt, tables())
        errors.flush()
        os.fsync(errors.fileno())
    return rows, bad


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
