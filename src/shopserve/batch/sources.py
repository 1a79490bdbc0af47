"""Batch inputs: Parquet, CSV or JSON Lines files (or folders of part files) as fixed-size chunks.

Chunks never span files and always hold ``batch_size`` rows (except a file's last), so the same
input always splits the same way: that is what makes a resumed job identical to a fresh one.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from shopserve.errors import InputError, NotFoundError, UsageError

JSONL_PROBE_LINES = 1000


class FileFormat(enum.StrEnum):
    PARQUET = "parquet"
    CSV = "csv"
    JSONL = "jsonl"


_SUFFIXES = {".parquet": FileFormat.PARQUET, ".pq": FileFormat.PARQUET, ".csv": FileFormat.CSV,
             ".jsonl": FileFormat.JSONL, ".ndjson": FileFormat.JSONL}


def format_of(path: Path) -> FileFormat:
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(f"{path}: unknown file type {path.suffix!r}; use .parquet, .csv or .jsonl")
    return fmt


@dataclass(frozen=True)
class Chunk:
    """Rows ``start .. start + batch.num_rows`` of the input; ``bad`` rows could not be parsed."""

    index: int
    start: int
    batch: pa.RecordBatch
    bad: dict[int, str] = field(default_factory=dict)  # position in chunk -> reason


@dataclass(frozen=True)
class InputSet:
    """The files of one input, in the order their rows are numbered."""

    files: tuple[Path, ...]
    fmt: FileFormat

    @classmethod
    def discover(cls, path: Path) -> InputSet:
        path = Path(path)
        if path.is_file():
            return cls((path,), format_of(path))
        if not path.is_dir():
            raise NotFoundError(f"{path}: no such input file or folder")
        files = sorted(p for p in path.iterdir()
                       if p.is_file() and not p.name.startswith((".", "_"))
                       and p.suffix.lower() in _SUFFIXES)
        if not files:
            raise UsageError(f"{path}: no .parquet, .csv or .jsonl part files in this folder")
        formats = {format_of(p) for p in files}
        if len(formats) > 1:
            raise UsageError(f"{path}: part files mix formats {sorted(f.value for f in formats)}")
        return cls(tuple(files), formats.pop())

    def fingerprint(self) -> list[dict[str, Any]]:
        """Names, sizes and modification times: a changed input must not be resumed."""
        out = []
        for p in self.files:
            st = os.stat(p)
            out.append({"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
        return out

    def columns(self) -> list[list[str]]:
        """The column names of every file, read without reading its rows."""
        return [_columns(p, self.fmt) for p in self.files]

    def total_rows(self) -> int | None:
        if self.fmt is not FileFormat.PARQUET:
            return None
        return sum(int(pq.ParquetFile(p).metadata.num_rows) for p in self.files)

    def chunks(self, batch_size: int, types: dict[str, pa.DataType]) -> Iterator[Chunk]:
        """All chunks in order, holding only the columns named in ``types``."""
        index, start = 0, 0
        for path in self.files:
            for batch, bad in _rebatch(_read(path, self.fmt, batch_size, types), batch_size):
                yield Chunk(index, start, batch, bad)
                index, start = index + 1, start + batch.num_rows


def check_columns(inputs: InputSet, needed: list[str]) -> None:
    """A ``UsageError`` naming the first file that lacks a needed column, before any work."""
    for path, names in zip(inputs.files, inputs.columns(), strict=True):
        missing = [c for c in needed if c not in names]
        if missing:
            raise UsageError(f"{path}: missing column(s) {missing} needed by the model or "
                             f"the job; the file has {names}")
        twice = [c for c in needed if names.count(c) > 1]
        if twice:
            raise UsageError(f"{path}: column(s) {twice} appear more than once")


def _columns(path: Path, fmt: FileFormat) -> list[str]:
    try:
        if fmt is FileFormat.PARQUET:
            return list(pq.ParquetFile(path).schema_arrow.names)
        if fmt is FileFormat.CSV:
            opts = pacsv.ReadOptions(block_size=1 << 16)
            return list(pacsv.open_csv(path, read_options=opts).schema.names)
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not a readable {fmt.value} file: {exc}") from exc
    seen: dict[str, None] = {}
    with path.open("rb") as handle:
        for _, line in zip(range(JSONL_PROBE_LINES), handle, strict=False):
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(row, dict):
                seen.update(dict.fromkeys(row))
    return list(seen)


def _read(
    path: Path, fmt: FileFormat, batch_size: int, types: dict[str, pa.DataType]
) -> Iterator[tuple[pa.RecordBatch, dict[int, str]]]:
    try:
        if fmt is FileFormat.PARQUET:
            file = pq.ParquetFile(path)
            for batch in file.iter_batches(batch_size=batch_size, columns=list(types)):
                yield batch, {}
        elif fmt is FileFormat.CSV:
            # Model columns are read as text and converted per chunk, so that one bad value
            # makes one bad row instead of failing the whole block.
            convert = pacsv.ConvertOptions(column_types=dict.fromkeys(types, pa.string()),
                                           include_columns=list(types), strings_can_be_null=True)
            reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=8 << 20),
                                    convert_options=convert)
            for batch in reader:
                yield batch, {}
        else:
            yield from _read_jsonl(path, batch_size, list(types))
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: cannot read rows: {exc}") from exc


def _read_jsonl(
    path: Path, batch_size: int, names: list[str]
) -> Iterator[tuple[pa.RecordBatch, dict[int, str]]]:
    rows: list[dict[str, Any]] = []
    bad: dict[int, str] = {}
    with path.open("rb") as handle:
        for line in handle:
            try:
                row = orjson.loads(line)
                if not isinstance(row, dict):
                    raise TypeError(f"expected a JSON object, got {type(row).__name__}")
            except (orjson.JSONDecodeError, TypeError) as exc:
                bad[len(rows)] = f"not a JSON object: {exc}"
                row = {}
            rows.append(row)
            if len(rows) == batch_size:
                yield _rows_to_batch(rows, names), bad
                rows, bad = [], {}
    if rows:
        yield _rows_to_batch(rows, names), bad


def _rows_to_batch(rows: list[dict[str, Any]], names: list[str]) -> pa.RecordBatch:
    arrays = []
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            array = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            array = None
        # objects (even empty ones, which Parquet parts cannot hold) are kept as text; a list of
        # numbers stays a list, for models with 2-D inputs
        if array is None or not _plain(array.type):
            array = pa.array([None if v is None else str(v) for v in values], pa.string())
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _plain(kind: pa.DataType) -> bool:
    return not pa.types.is_nested(kind) or (
        pa.types.is_list(kind) and not pa.types.is_nested(kind.value_type))


def _rebatch(
    source: Iterator[tuple[pa.RecordBatch, dict[int, str]]], size: int
) -> Iterator[tuple[pa.RecordBatch, dict[int, str]]]:
    """Exactly ``size`` rows per batch (the last may be shorter), bad-row marks kept aligned."""
    pending: list[pa.RecordBatch] = []
    marks: dict[int, str] = {}
    held = 0
    for batch, bad in source:
        if not pending and batch.num_rows == size:  # the common case: no copy at all
            yield batch, bad
            continue
        marks.update({held + i: reason for i, reason in bad.items()})
        pending.append(batch)
        held += batch.num_rows
        while held >= size:
            table = pa.Table.from_batches(pending)
            head = table.slice(0, size).combine_chunks().to_batches()
            yield _one_batch(head, table.schema), {i: r for i, r in marks.items() if i < size}
            rest = table.slice(size)
            pending = rest.combine_chunks().to_batches() if rest.num_rows else []
            marks = {i - size: r for i, r in marks.items() if i >= size}
            held -= size
    if held:
        table = pa.Table.from_batches(pending)
        yield _one_batch(table.combine_chunks().to_batches(), table.schema), marks


def _one_batch(batches: list[pa.RecordBatch], schema: pa.Schema) -> pa.RecordBatch:
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=schema)
