"""`shopserve monitor drift --input`: a batch of model inputs against the evaluation data."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import eval_like_rows

from shopserve.cli.main import main


def write(rows: list[dict[str, object]], path: Path) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_batch_drift_report(monitor_home: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    same = write(eval_like_rows(300, seed=41), tmp_path / "same.parquet")
    moved = write(eval_like_rows(300, seed=42, shift=3.0), tmp_path / "moved.parquet")
    home = ["--home", str(monitor_home)]
    assert main(["monitor", "drift", "--model", "ctr@1", "--input", str(same), "--json",
                 *home]) == 0
    calm = json.loads(capsys.readouterr().out)
    assert calm["alert"] is False and calm["reports"][0]["live_rows"] == 300
    assert main(["monitor", "drift", "--model", "ctr@1", "--input", str(moved), "--json",
                 *home]) == 0
    report = json.loads(capsys.readouterr().out)["reports"][0]
    columns = {c["column"]: c for c in report["columns"]}
    assert report["alert"] and columns["I1"]["drifted"] and columns["I1"]["psi"] > 1
    assert not columns["C1"]["drifted"] and "score" in columns
    assert main(["monitor", "drift", "--model", "ctr@1", "--input", str(moved), *home]) == 0
    assert "drift: ctr@1" in capsys.readouterr().out
    assert main(["monitor", "drift", "--model", "ctr@1", "--input", str(tmp_path / "no.parquet"),
                 *home]) == 2
