"""Score one chunk: convert its columns, isolate bad rows, and build the part's output table.

A bad row never stops the job: conversion failures are found value by value, scoring failures
by halving the batch until the failing rows are alone, each with the reason the model gave.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shopserve.batch.predictors import Predictor, PredictorSource
from shopserve.batch.sources import Chunk
from shopserve.errors import InputError

ROW_COLUMN = "row"


@dataclass(frozen=True)
class ChunkColumns:
    """Which input columns a job reads besides the model's own."""

    id_column: str | None = None
    label_column: str | None = None
    group_column: str | None = None


@dataclass(frozen=True)
class ScoredChunk:
    table: pa.Table  # id, model outputs, label (good rows only, in input order)
    errors: list[dict[str, object]]  # {"row", "id", "reason"} per bad row


def read_types(predictor: Predictor, cols: ChunkColumns) -> dict[str, pa.DataType]:
    types = dict(predictor.needs)
    if cols.id_column:
        types.setdefault(cols.id_column, pa.string())
    if cols.label_column:
        types[cols.label_column] = pa.float64()
    if cols.group_column:
        types.setdefault(cols.group_column, pa.string())
    return types


def _conform(batch: pa.RecordBatch, types: dict[str, pa.DataType], bad: dict[int, str],
             as_is: tuple[str | None, ...] = ()) -> pa.RecordBatch:
    """The columns of ``types``, converted; ``as_is`` columns (ids, groups) keep their type."""
    arrays = []
    for name, target in types.items():
        column = batch.column(name)
        if column.type != target and name not in as_is:
            column = _cast(name, column, target, bad)
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, names=list(types))


def _cast(name: str, column: pa.Array, target: pa.DataType, bad: dict[int, str]) -> pa.Array:
    try:
        return pc.cast(column, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    values: list[object] = []
    for i, value in enumerate(column.to_pylist()):
        try:
            values.append(pc.cast(pa.array([value]), target)[0].as_py())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError,
                OverflowError):  # a uint64 over 2**63 has no Python-side type of its own
            bad.setdefault(i, f"column {name!r}: {value!r} is not a {target}")
            values.append(None)
    return pa.array(values, type=target)


def _score(predictor: Predictor, batch: pa.RecordBatch, offset: int,
           bad: dict[int, str]) -> list[tuple[int, dict[str, np.ndarray]]]:
    """Outputs of every scorable slice, with its offset; unscorable rows go into ``bad``."""
    if batch.num_rows == 0:
        return []
    try:
        return [(offset, predictor.predict(batch))]
    except InputError as exc:
        if batch.num_rows == 1:
            bad[offset] = str(exc)
            return []
    half = batch.num_rows // 2
    return (_score(predictor, batch.slice(0, half), offset, bad)
            + _score(predictor, batch.slice(half), offset + half, bad))


class ChunkScorer(Protocol):
    """Turns one chunk of input rows into the rows of its part (and its bad rows)."""

    def score(self, chunk: Chunk) -> ScoredChunk: ...


class ScorerSource(Protocol):
    """Small and picklable: each worker process builds its own scorer (and session) from it."""

    def build(self) -> ChunkScorer: ...


@dataclass(frozen=True)
class PredictScorerSource:
    source: PredictorSource
    cols: ChunkColumns

    def build(self) -> ChunkScorer:
        return PredictScorer(self.source.build(), self.cols)


class PredictScorer:
    """``batch predict``: one output row per good input row, in input order."""

    def __init__(self, predictor: Predictor, cols: ChunkColumns) -> None:
        self.predictor, self.cols = predictor, cols
        self.types = read_types(predictor, cols)

    def score(self, chunk: Chunk) -> ScoredChunk:
        return score_chunk(self.predictor, chunk, self.cols, self.types)


def score_chunk(predictor: Predictor, chunk: Chunk, cols: ChunkColumns,
                types: dict[str, pa.DataType] | None = None) -> ScoredChunk:
    types = types or read_types(predictor, cols)
    bad = dict(chunk.bad)
    needs = predictor.needs
    as_is = tuple(c for c in (cols.id_column, cols.group_column) if c and c not in needs)
    batch = _conform(chunk.batch, types, bad, as_is)
    if cols.label_column:
        _mark_nulls(batch, cols.label_column, bad)
    keep = np.ones(batch.num_rows, dtype=bool)
    keep[list(bad)] = False
    good_idx = np.flatnonzero(keep)
    scored_bad: dict[int, str] = {}
    # Clean chunks (nearly all of them) are scored as they are: no take, no filter, no copy.
    good = batch if not bad else batch.take(pa.array(good_idx))
    scored = _score(predictor, good, 0, scored_bad)
    for pos, reason in scored_bad.items():
        bad[int(good_idx[pos])] = reason
    keep[[int(good_idx[p]) for p in scored_bad]] = False
    outputs = _join(scored, len(good_idx), scored_bad)
    ids = _ids(batch, chunk.start, cols)
    mask = None if not bad else pa.array(keep)
    table = {ROW_COLUMN if cols.id_column is None else cols.id_column:
             ids if mask is None else ids.filter(mask)}
    table.update(outputs)
    for extra in (cols.label_column, cols.group_column):
        if extra and extra not in table:
            column = batch.column(extra)
            table[extra] = column if mask is None else column.filter(mask)
    errors = [{"row": chunk.start + i, "id": ids[i].as_py(), "reason": bad[i]} for i in sorted(bad)]
    return ScoredChunk(pa.table(table), errors)


def _mark_nulls(batch: pa.RecordBatch, name: str, bad: dict[int, str]) -> None:
    nulls = np.flatnonzero(batch.column(name).is_null().to_numpy(zero_copy_only=False))
    for i in nulls:
        bad.setdefault(int(i), f"column {name!r}: missing label")


def _join(scored: list[tuple[int, dict[str, np.ndarray]]], n: int,
          dropped: dict[int, str]) -> dict[str, pa.Array]:
    """Concatenate the slices' outputs, in order, as Arrow columns."""
    if not scored:
        return {}
    names = list(scored[0][1])
    out: dict[str, pa.Array] = {}
    for name in names:
        parts = [np.asarray(outputs[name]) for _, outputs in scored]
        values: np.ndarray = parts[0] if len(parts) == 1 else np.concatenate(parts)
        if values.ndim == 2 and int(values.shape[-1]) == 1:
            values = values.reshape(len(values))  # a view of a contiguous [n, 1] output
        if len(values) != n - len(dropped):
            raise InputError(f"output {name!r}: {len(values)} rows for {n - len(dropped)} inputs")
        if values.ndim == 1:
            out[name] = pa.array(values)
        else:
            flat = pa.array(values.reshape(-1))
            out[name] = pa.FixedSizeListArray.from_arrays(flat, int(np.prod(values.shape[1:])))
    return out


def _ids(batch: pa.RecordBatch, start: int, cols: ChunkColumns) -> pa.Array:
    if cols.id_column is None:
        return pa.array(np.arange(start, start + batch.num_rows, dtype=np.int64))
    return batch.column(cols.id_column)
