"""A real ``kill -9`` in the middle of a job, then the same command again: identical output."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
from batch_helpers import SHOPSERVE, make_rows, run_cli


def predict_args(model: Path, src: Path, out: Path, workers: int) -> list[str]:
    return ["batch", "predict", "--model", str(model), "--input", str(src), "--output", str(out),
            "--batch-size", "500", "--id-column", "id", "--workers", str(workers)]


def test_kill_9_mid_job_then_rerun_gives_identical_bytes(tmp_path: Path, model: Path) -> None:
    src = tmp_path / "in.parquet"
    pq.write_table(make_rows(300_000, seed=7), src, row_group_size=50_000)
    reference = tmp_path / "reference.parquet"
    done = run_cli(*predict_args(model, src, reference, workers=1), timeout=240)
    assert done.returncode == 0, done.stderr

    out = tmp_path / "scores.parquet"
    work = tmp_path / ".scores.parquet.batch-work"
    job = subprocess.Popen([SHOPSERVE, *predict_args(model, src, out, workers=2)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(list(work.glob("part-*.parquet"))) < 5:
            assert job.poll() is None, "the job ended before it could be killed"
            assert time.monotonic() < deadline, "the job wrote no parts in time"
            time.sleep(0.01)
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=30)
    assert not out.exists(), "a killed job must not leave an output under the final name"
    parts_before = len(list(work.glob("part-*.parquet")))
    assert 0 < parts_before < 600

    again = run_cli(*predict_args(model, src, out, workers=1), timeout=240)
    assert again.returncode == 0, again.stderr
    assert "resumed" in again.stdout and " 0 resumed" not in again.stdout
    assert out.read_bytes() == reference.read_bytes()
    assert pq.read_table(out).num_rows == 300_000
    assert not work.exists()


def test_two_workers_match_one(tmp_path: Path, model: Path) -> None:
    src = tmp_path / "in.parquet"
    pq.write_table(make_rows(5_000, seed=2), src)
    one, two = tmp_path / "one.parquet", tmp_path / "two.parquet"
    assert run_cli(*predict_args(model, src, one, workers=1)).returncode == 0
    result = run_cli(*predict_args(model, src, two, workers=2))
    assert result.returncode == 0, result.stderr
    assert one.read_bytes() == two.read_bytes()


def test_changed_input_is_not_resumed(tmp_path: Path, model: Path) -> None:
    src = tmp_path / "in.parquet"
    pq.write_table(make_rows(100), src)
    work = tmp_path / ".out.parquet.batch-work"
    work.mkdir()
    (work / "progress.json").write_text('{"fingerprint": {"model": "other"}, "chunks": null}')
    result = run_cli(*predict_args(model, src, tmp_path / "out.parquet", workers=1))
    assert result.returncode == 4 and "--restart" in result.stderr
    restarted = run_cli(*predict_args(model, src, tmp_path / "out.parquet", workers=1),
                        "--restart")
    assert restarted.returncode == 0, restarted.stderr
