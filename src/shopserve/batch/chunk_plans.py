"""Parquet inputs cut into chunks from file metadata alone, so that worker processes read their own.

The chunks are exactly those ``InputSet.chunks`` makes (never across files, ``batch_size`` rows
but a file's last), so the output does not depend on which process read which chunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from shopserve.batch.sources import Chunk, FileFormat, InputSet
from shopserve.errors import InputError

SPANS_PER_WORKER = 2  # a span is about remaining / (2 x workers) chunks: big first, small last


@dataclass(frozen=True)
class PlannedChunk:
    """Where chunk ``index`` lies: rows ``offset .. offset + rows`` of file ``file``."""

    index: int
    start: int  # its first row's number in the whole input
    file: int
    offset: int
    rows: int


@dataclass(frozen=True)
class ParquetPlan:
    """Every chunk of a Parquet input (``chunks[i].index == i``) and the columns to read."""

    files: tuple[str, ...]
    columns: tuple[str, ...]
    batch_size: int
    chunks: tuple[PlannedChunk, ...]


def plan_parquet(inputs: InputSet, batch_size: int, columns: Iterable[str]) -> ParquetPlan | None:
    """The chunks of a Parquet input, from its footers; None for the sequential formats."""
    if inputs.fmt is not FileFormat.PARQUET:
        return None
    chunks: list[PlannedChunk] = []
    start = 0
    for number, path in enumerate(inputs.files):
        try:
            rows = int(pq.ParquetFile(path).metadata.num_rows)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{path}: cannot read rows: {exc}") from exc
        for offset in range(0, rows, batch_size):
            n = min(batch_size, rows - offset)
            chunks.append(PlannedChunk(len(chunks), start, number, offset, n))
            start += n
    return ParquetPlan(tuple(str(p.resolve()) for p in inputs.files), tuple(columns),
                       batch_size, tuple(chunks))


def split_spans(todo: Sequence[PlannedChunk], workers: int) -> list[tuple[int, int]]:
    """(first index, count) spans of consecutive chunks of one file, in input order.

    Spans shrink as the work left shrinks (guided scheduling): few spans, so a worker seldom
    has to find its place in a file again, and small ones at the end, so no worker waits long
    for another to finish.
    """
    spans: list[tuple[int, int]] = []
    left = len(todo)
    i = 0
    while i < len(todo):
        want = max(1, left // (SPANS_PER_WORKER * workers))
        first = todo[i]
        n = 1
        while (n < want and i + n < len(todo) and todo[i + n].index == first.index + n
               and todo[i + n].file == first.file):
            n += 1
        spans.append((first.index, n))
        i, left = i + n, left - n
    return spans


class SpanReader:
    """Reads the rows of spans of one plan; a span that starts where the last one ended
    continues the same scan, any other starts at the row group holding its first row."""

    def __init__(self, plan: ParquetPlan) -> None:
        self.plan = plan
        self._file = -1
        self._position = -1  # the row of ``_file`` the scan is at
        self._batches: Iterator[pa.RecordBatch] = iter(())
        self._head: pa.RecordBatch | None = None

    def read(self, first: int, count: int) -> Iterator[Chunk]:
        for planned in self.plan.chunks[first:first + count]:
            path = self.plan.files[planned.file]
            try:
                if (planned.file, planned.offset) != (self._file, self._position):
                    self._seek(planned.file, planned.offset)
                batch = self._take(planned.rows, path)
            except (pa.ArrowInvalid, OSError) as exc:
                self._file = -1
                raise InputError(f"{path}: cannot read rows: {exc}") from exc
            self._position += planned.rows
            yield Chunk(planned.index, planned.start, batch, {})

    def _seek(self, file: int, offset: int) -> None:
        handle = pq.ParquetFile(self.plan.files[file])
        group, first_row = 0, 0
        meta = handle.metadata
        while (group < meta.num_row_groups - 1
               and first_row + meta.row_group(group).num_rows <= offset):
            first_row += meta.row_group(group).num_rows
            group += 1
        # One thread: each worker process keeps to its own core.
        self._batches = handle.iter_batches(
            batch_size=self.plan.batch_size, row_groups=list(range(group, meta.num_row_groups)),
            columns=list(self.plan.columns), use_threads=False)
        self._head = None
        self._file, self._position = file, first_row
        if offset > first_row:
            self._take(offset - first_row, self.plan.files[file], keep=False)
            self._position = offset

    def _take(self, rows: int, path: str, keep: bool = True) -> pa.RecordBatch:
        """The next ``rows`` rows of the scan as one batch (a slice, no copy, when it can be)."""
        pieces: list[pa.RecordBatch] = []
        need = rows
        while need:
            if self._head is None or self._head.num_rows == 0:
                self._head = next(self._batches, None)
                if self._head is None:
                    raise InputError(f"{path}: fewer rows than its footer says")
            piece = self._head.slice(0, need)
            self._head = self._head.slice(piece.num_rows)
            if keep:
                pieces.append(piece)
            need -= piece.num_rows
        if not keep:
            return piece
        if len(pieces) == 1:
            return pieces[0]
        return pa.Table.from_batches(pieces).combine_chunks().to_batches()[0]
