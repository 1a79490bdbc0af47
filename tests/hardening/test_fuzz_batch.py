"""Property-based fuzzing of ``batch predict`` inputs: random CSV and JSON Lines bytes and Parquet
files with random schemas. A job either runs, with every unusable row in the errors file, or stops
with a ``ShopserveError`` naming the file; no output is ever half-written."""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from pathlib import Path

import onnx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from shopserve.batch.job import PredictJobSpec, run_predict
from shopserve.errors import ShopserveError


def _make_model(path: Path) -> Path:
    """score = sigmoid(0.8 * x1 - 0.5 * x2) with inputs x1, x2 of shape [N, 1]."""
    nodes = [helper.make_node("Concat", ["x1", "x2"], ["x"], axis=1),
             helper.make_node("MatMul", ["x", "w"], ["z"]),
             helper.make_node("Sigmoid", ["z"], ["score"])]
    graph = helper.make_graph(
        nodes, "logit",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 1]) for n in ("x1", "x2")],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor("w", TensorProto.FLOAT, [2, 1], [0.8, -0.5])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_model(tmp_path_factory.mktemp("model") / "model.onnx")


CELLS = st.one_of(st.sampled_from(["", "1", "-2.5", "nan", "inf", "1e400", "x", "\"", "\"a,b\"",
                                   "é", "0x10", " 3 "]), st.text(max_size=4))
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(),
              st.text(max_size=4)),
    lambda inner: st.one_of(st.lists(inner, max_size=2),
                            st.dictionaries(st.text(max_size=3), inner, max_size=2)),
    max_leaves=4)


@st.composite
def csv_inputs(draw: st.DrawFn) -> tuple[bytes, int | None]:
    names = ["id", "x1", "x2"]
    if draw(st.integers(0, 3)) == 0:
        names = draw(st.lists(st.sampled_from(["id", "x1", "x2", "x", ""]), max_size=5))
    rows = [",".join(names)]
    for _ in range(draw(st.integers(0, 6))):
        width = draw(st.sampled_from([len(names)] * 4 + [len(names) + 1, max(len(names) - 1, 0)]))
        rows.append(",".join(draw(CELLS) for _ in range(width)))
    text = "\n".join(rows)
    encoding = draw(st.sampled_from(["utf-8"] * 4 + ["latin-1", "utf-16", "raw"]))
    if encoding == "raw":
        return draw(st.binary(max_size=120)), None
    return text.encode(encoding, errors="replace"), None


@st.composite
def jsonl_inputs(draw: st.DrawFn) -> tuple[bytes, int | None]:
    lines = []
    for _ in range(draw(st.integers(1, 6))):
        row = draw(st.dictionaries(st.sampled_from(["id", "x1", "x2", "x"]), JSON_VALUES,
                                   max_size=4))
        if draw(st.booleans()):
            row.update(x1=draw(JSON_VALUES), x2=draw(st.floats(-3, 3)))
        line = json.dumps(row)
        lines.append(line if draw(st.integers(0, 5)) else draw(st.text(max_size=8)))
    raw = "\n".join(lines).encode("utf-8", errors="surrogatepass")
    return raw, len(raw.splitlines(keepends=True)) if b"\r" not in raw else None


COLUMNS = st.sampled_from([
    pa.array([1.0, -2.0, None]), pa.array([1, 2, 3]), pa.array(["1.5", "x", None]),
    pa.array([True, False, None]), pa.array([[1.0], [], None]), pa.array([{"a": 1}] * 3),
    pa.array([None, None, None]), pa.array([2**64 - 1, 0, 1], pa.uint64()),
    pa.array([float("nan"), float("inf"), 1e300]), pa.array([b"\xff", b"1", b"2"]),
    pa.array([1, 2, 3], pa.timestamp("s")), pa.array(["1", "2", "1"]).dictionary_encode(),
    pa.array([1.5, 2.5, 3.5], pa.float16()),
])


@st.composite
def parquet_inputs(draw: st.DrawFn) -> tuple[bytes, int | None]:
    names = draw(st.lists(st.sampled_from(["id", "x1", "x2", "x"]), min_size=1, max_size=5))
    if draw(st.integers(0, 3)):
        names = ["x1", "x2", *names]
    table = pa.Table.from_arrays([draw(COLUMNS) for _ in names], names=names)
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=draw(st.integers(1, 3)))
    raw = buf.getvalue()
    if draw(st.integers(0, 6)) == 0:
        return raw[: draw(st.integers(0, len(raw) - 1))], None
    return raw, 3


def _run(model: Path, suffix: str, data: bytes, rows: int | None, out_suffix: str,
         batch_size: int, id_column: str | None) -> None:
    root = Path(tempfile.mkdtemp(prefix="shopserve-fuzz-"))
    try:
        source = root / f"in{suffix}"
        source.write_bytes(data)
        output = root / f"out{out_suffix}"
        spec = PredictJobSpec(model=str(model), input=source, output=output,
                              batch_size=batch_size, id_column=id_column)
        try:
            summary = run_predict(spec)
        except ShopserveError as exc:
            event(f"stopped: {type(exc).__name__}")
            assert str(exc).strip()
            assert not output.exists()
            assert not [p for p in root.iterdir() if ".tmp-" in p.name]  # no half-written file
            return
        event("ran, with bad rows" if summary.bad_rows else "ran")
        assert output.exists() and summary.errors_path.is_file()
        errors = summary.errors_path.read_bytes().splitlines()
        assert len(errors) == summary.bad_rows
        assert all(json.loads(e)["reason"] for e in errors)
        if rows is not None:
            assert summary.rows + summary.bad_rows == rows
    finally:
        shutil.rmtree(root)


OUTPUTS = st.sampled_from([".parquet", ".csv", ".jsonl"])
SIZES = st.integers(1, 4)
IDS = st.sampled_from([None, None, "id"])
FUZZ = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@FUZZ
@given(csv_inputs(), OUTPUTS, SIZES, IDS)
@example((b"id,x1,x2\na,1,2\nb,x,3\n", None), ".csv", 1, "id")
def test_csv_inputs_run_or_stop_cleanly(model: Path, data: tuple[bytes, int | None],
                                        out: str, size: int, id_column: str | None) -> None:
    _run(model, ".csv", *data, out, size, id_column)


@FUZZ
@given(jsonl_inputs(), OUTPUTS, SIZES, IDS)
@example((b'{"x1": 1, "x2": 2}\n[1]\n{"x1": {"a": 1}, "x2": 1}', 3), ".parquet", 2, None)
@example((b'{"id": [], "x1": "a", "x2": 1}', 1), ".csv", 1, "id")  # CSV cannot hold list<null>
@example((b'{"id": [1], "x1": 1, "x2": 1}', 1), ".csv", 1, "id")
def test_jsonl_inputs_run_or_stop_cleanly(model: Path, data: tuple[bytes, int | None],
                                          out: str, size: int, id_column: str | None) -> None:
    _run(model, ".jsonl", *data, out, size, id_column)


@FUZZ
@given(parquet_inputs(), OUTPUTS, SIZES, IDS)
def test_parquet_inputs_run_or_stop_cleanly(model: Path, data: tuple[bytes, int | None],
                                            out: str, size: int, id_column: str | None) -> None:
    _run(model, ".parquet", *data, out, size, id_column)
