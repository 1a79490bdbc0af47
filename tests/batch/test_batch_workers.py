"""Several workers reading their own chunks of a Parquet input give what one worker gives."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from batch_helpers import make_rows

from shopserve.batch import PredictJobSpec, run_predict
from shopserve.batch.chunk_plans import SpanReader, plan_parquet, split_spans
from shopserve.batch.sources import InputSet


def write_parts(folder: Path) -> Path:
    """Three files whose row groups (700 rows) do not line up with 500-row chunks, with bad
    rows (NaN, a missing value) in each."""
    folder.mkdir()
    for n, (rows, seed) in enumerate([(2_345, 1), (500, 2), (1_801, 3)]):
        table = make_rows(rows, seed=seed)
        x1 = table["x1"].to_numpy().copy()
        x1[[3, rows // 2]] = np.nan
        x2 = pa.array([*table["x2"].to_pylist()[:-1], None])
        table = table.set_column(1, "x1", pa.array(x1)).set_column(2, "x2", x2)
        pq.write_table(table, folder / f"part-{n}.parquet", row_group_size=700)
    return folder


def parquet_bytes(batch: pa.RecordBatch) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_batches([batch]), sink)
    return sink.getvalue()


def test_any_span_reads_the_rows_of_a_sequential_read(tmp_path: Path) -> None:
    inputs = InputSet.discover(write_parts(tmp_path / "in"))
    types = {"id": pa.string(), "x1": pa.float64(), "x2": pa.float64()}
    expected = list(inputs.chunks(500, types))
    plan = plan_parquet(inputs, 500, list(types))
    assert plan is not None and len(plan.chunks) == len(expected)
    reader = SpanReader(plan)
    order = [(4, 3), (0, 2), (2, 1), (7, 4), (3, 1), (9, 1), (8, 2), (9, 1)]
    for first, count in order:
        for got in reader.read(first, count):
            want = expected[got.index]
            assert (got.start, got.batch.num_rows) == (want.start, want.batch.num_rows)
            assert parquet_bytes(got.batch) == parquet_bytes(want.batch)  # NaN != NaN
    spans = split_spans(plan.chunks, 2)
    assert [i for first, n in spans for i in range(first, first + n)] == list(range(10))
    assert all(len({plan.chunks[i].file for i in range(f, f + n)}) == 1 for f, n in spans)


def test_two_and_three_workers_write_the_bytes_of_one(tmp_path: Path, model: Path) -> None:
    src = write_parts(tmp_path / "in")
    outputs = {}
    for workers in (1, 2, 3):
        out = tmp_path / f"out-{workers}.parquet"
        summary = run_predict(PredictJobSpec(model=str(model), input=src, output=out,
                                             id_column="id", batch_size=500, workers=workers))
        assert (summary.rows, summary.bad_rows, summary.chunks) == (4_637, 9, 10)
        outputs[workers] = (out.read_bytes(), summary.errors_path.read_bytes())
    assert outputs[2] == outputs[1] and outputs[3] == outputs[1]
    assert outputs[1][1].count(b"\n") == 9
