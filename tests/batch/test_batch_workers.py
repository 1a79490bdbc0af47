"""Several workers reading their own chunks of a Parquet input give what one worker gives."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
from batch_helpers import SHOPSERVE, make_rows, run_cli

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


def test_a_killed_worker_stops_the_job_and_the_rerun_finishes_it(tmp_path: Path,
                                                                   model: Path) -> None:
    src = tmp_path / "in.parquet"
    pq.write_table(make_rows(200_000, seed=5), src, row_group_size=30_000)
    out, work = tmp_path / "out.parquet", tmp_path / ".out.parquet.batch-work"
    args = ["batch", "predict", "--model", str(model), "--input", str(src), "--output", str(out),
            "--batch-size", "500", "--id-column", "id", "--workers", "2"]
    job = subprocess.Popen([SHOPSERVE, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(list(work.glob("part-*.parquet"))) < 5:
            assert job.poll() is None, "the job ended before a worker could be killed"
            assert time.monotonic() < deadline, "the job wrote no parts in time"
            time.sleep(0.01)
        victim = next(p for p in psutil.Process(job.pid).children()
                      if "resource_tracker" not in " ".join(p.cmdline()))
        victim.kill()
        _, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(timeout=30)
    assert job.returncode == 1 and f"batch worker {victim.pid} ended" in err
    assert not out.exists() and 0 < len(list(work.glob("part-*.parquet"))) < 400

    again = run_cli(*args, timeout=240)
    assert again.returncode == 0, again.stderr
    reference = tmp_path / "reference.parquet"
    assert run_cli(*args[:7], str(reference), *args[8:-1], "1").returncode == 0  # one worker
    assert out.read_bytes() == reference.read_bytes()
