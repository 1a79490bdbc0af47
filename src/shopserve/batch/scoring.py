"""Score one chunk: convert its columns, isolate bad rows, and build the part's output table.

A bad row never stops the job: conversion failures are found value by value, scoring failures
by halving the batch until the failing rows are alone, each with the reason the model gave.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shopserve.batch.predictors import Predictor
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


def _conform(batch: pa.RecordBatch, types: dict[str, pa.DataType],
             bad: dict[int, str]) -> pa.RecordBatch:
    arrays = []
    for name, target in types.items():
        column = batch.column(name)
        if column.type != target:
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
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
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


def score_chunk(predictor: Predictor, chunk: Chunk, cols: ChunkColumns) -> ScoredChunk:
    types = read_types(predictor, cols)
    bad = dict(chunk.bad)
    batch = _conform(chunk.batch, types, bad)
    if cols.label_column:
        _mark_nulls(batch, cols.label_column, bad)
    keep = np.ones(batch.num_rows, dtype=bool)
    keep[list(bad)] = False
    good_idx = np.flatnonzero(keep)
    scored_bad: dict[int, str] = {}
    scored = _score(predictor, batch.take(pa.array(good_idx)), 0, scored_bad)
    for pos, reason in scored_bad.items():
        bad[int(good_idx[pos])] = reason
    keep[[int(good_idx[p]) for p in scored_bad]] = False
    outputs = _join(scored, len(good_idx), scored_bad)
    ids = _ids(batch, chunk.start, cols)
    table = {ROW_COLUMN if cols.id_column is None else cols.id_column: ids.filter(pa.array(keep))}
    table.update(outputs)
    kept = batch.filter(pa.array(keep))
    for extra in (cols.label_column, cols.group_column):
        if extra and extra not in table:
            table[extra] = kept.column(extra)
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
        values: np.ndarray = np.concatenate(parts)
        if values.ndim == 2 and int(values.shape[-1]) == 1:
            values = values[:, 0]
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
