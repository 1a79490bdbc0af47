"""``shopserve batch predict`` as a user runs it: formats, bad rows, schema checks, metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from batch_helpers import WEIGHTS, make_rows, run_cli

from shopserve.batch import PredictJobSpec, run_predict


def expected_scores(table: pa.Table) -> np.ndarray:
    x = np.stack([table["x1"].to_numpy(), table["x2"].to_numpy()], axis=1)
    return 1 / (1 + np.exp(-(x @ WEIGHTS.astype(np.float64)[:, 0] + 0.1)))


def test_parquet_in_order_with_ids_and_metrics(tmp_path: Path, model: Path) -> None:
    rows = make_rows(1000)
    pq.write_table(rows, tmp_path / "in.parquet")
    out = tmp_path / "scores.parquet"
    result = run_cli("batch", "predict", "--model", str(model), "--input",
                     str(tmp_path / "in.parquet"), "--output", str(out), "--batch-size", "128",
                     "--id-column", "id", "--label-column", "label")
    assert result.returncode == 0, result.stderr
    assert "wrote 1,000 rows" in result.stdout and "auc=" in result.stdout
    scored = pq.read_table(out)
    assert scored["id"].to_pylist() == rows["id"].to_pylist()
    np.testing.assert_allclose(scored["score"].to_numpy(), expected_scores(rows), rtol=1e-5)
    metrics = json.loads((tmp_path / "scores.metrics.json").read_text())["metrics"]
    assert 0.6 < metrics["auc"] < 0.9 and metrics["rows"] == 1000
    assert {"logloss", "accuracy", "precision_at_10", "recall_at_10", "ndcg_at_10"} <= set(metrics)
    assert (tmp_path / "scores.errors.jsonl").read_text() == ""
    assert "progress" in result.stderr or "done:" in result.stderr
    assert not list(tmp_path.glob(".*batch-work"))


def test_bad_rows_go_to_the_errors_file_and_the_rest_is_scored(tmp_path: Path,
                                                                model: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("id,x1,x2\na,1.0,2.0\nb,oops,1.0\nc,0.5,\nd,nan,1\ne,-1,0.25\n")
    out = tmp_path / "out.jsonl"
    summary = run_predict(PredictJobSpec(model=str(model), input=src, output=out,
                                         id_column="id", batch_size=2))
    assert summary.rows == 2 and summary.bad_rows == 3
    got = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [r["id"] for r in got] == ["a", "e"]
    errors = [orjson.loads(line) for line in summary.errors_path.read_bytes().splitlines()]
    assert [(e["row"], e["id"]) for e in errors] == [(1, "b"), (2, "c"), (3, "d")]
    assert "'oops'" in errors[0]["reason"] and "x1" in errors[0]["reason"]
    assert "'x2': missing" in errors[1]["reason"]
    assert "'x1': missing" in errors[2]["reason"]  # CSV reads "nan" as a missing value


def test_nan_in_a_typed_file_is_a_bad_row(tmp_path: Path, model: Path) -> None:
    pq.write_table(pa.table({"x1": [1.0, float("nan")], "x2": [0.0, 0.0]}), tmp_path / "i.parquet")
    summary = run_predict(PredictJobSpec(model=str(model), input=tmp_path / "i.parquet",
                                         output=tmp_path / "o.parquet"))
    assert summary.rows == 1 and summary.bad_rows == 1
    assert "NaN" in summary.errors_path.read_text()


def test_jsonl_folder_of_parts_to_csv(tmp_path: Path, model: Path) -> None:
    parts = tmp_path / "parts"
    parts.mkdir()
    rows = make_rows(30, seed=3).drop_columns(["label"])
    for i, piece in enumerate((rows.slice(0, 10), rows.slice(10, 20))):
        lines = b"".join(orjson.dumps(r) + b"\n" for r in piece.to_pylist())
        (parts / f"part-{i}.jsonl").write_bytes(lines + (b"{broken\n" if i == 0 else b""))
    out = tmp_path / "out.csv"
    summary = run_predict(PredictJobSpec(model=str(model), input=parts, output=out,
                                         batch_size=8))
    table = pacsv.read_csv(out)
    assert table["row"].to_pylist() == [*range(10), *range(11, 31)]
    np.testing.assert_allclose(table["score"].to_numpy(), expected_scores(rows), rtol=1e-5)
    assert summary.bad_rows == 1
    assert "not a JSON object" in summary.errors_path.read_text()


def test_missing_column_stops_before_any_work(tmp_path: Path, model: Path) -> None:
    pq.write_table(pa.table({"x1": [1.0]}), tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    result = run_cli("batch", "predict", "--model", str(model), "--input",
                     str(tmp_path / "in.parquet"), "--output", str(out))
    assert result.returncode == 2
    assert "missing column(s) ['x2']" in result.stderr and "in.parquet" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet", "model.onnx"]


def test_existing_output_is_not_replaced_without_overwrite(tmp_path: Path, model: Path) -> None:
    pq.write_table(make_rows(5), tmp_path / "in.parquet")
    (tmp_path / "out.parquet").write_bytes(b"keep me")
    result = run_cli("batch", "predict", "--model", str(model), "--input",
                     str(tmp_path / "in.parquet"), "--output", str(tmp_path / "out.parquet"))
    assert result.returncode == 4 and "--overwrite" in result.stderr
    assert (tmp_path / "out.parquet").read_bytes() == b"keep me"
