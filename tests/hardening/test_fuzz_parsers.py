"""Property-based fuzzing of the file parsers users feed shopserve: drill files, the real-data
loaders and tune's request logs. Whatever the bytes, only a ``ShopserveError`` with a message
naming the file comes out (bundles and batch inputs have their own files next to this one)."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shopserve.data.loaders import load_clicks, load_judgments, load_purchases
from shopserve.data.tables import CLICK_CATEGORICAL, CLICK_NUMERIC
from shopserve.drill.spec import load_drill, parse_drill
from shopserve.errors import ShopserveError, SpecError
from shopserve.tune.requestlog import iter_requests

CATALOG = Path(__file__).resolve().parents[2] / "src/shopserve/drill/catalog"
DRILL_TEXT = (CATALOG / "overload.yaml").read_text(encoding="utf-8")
DRILL = yaml.safe_load(DRILL_TEXT)

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                    st.floats(allow_nan=True), st.text(max_size=8),
                    st.sampled_from(["probe", "http", "overload", "proxy", "shopserve", "range",
                                     "one", "count", "rank", "zone-loss", "bad-canary"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.sampled_from(["type", "name", "rate", "duration_s", "mix", "route",
                                     "faults", "select", "count", "range", "target", "url",
                                     "provider", "tolerance", "file", "demo", "x"]),
                    inner, max_size=4)), max_leaves=12)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


PATHS = _paths(DRILL)[1:]


@st.composite
def mutated_drills(draw: st.DrawFn) -> Any:
    """The catalog's overload drill with a few values replaced, deleted or added."""
    data = copy.deepcopy(DRILL)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(PATHS))
        parent = data
        for part in path[:-1]:
            if not isinstance(parent, dict | list):
                break
            try:
                parent = parent[part]
            except (KeyError, IndexError, TypeError):
                break
        else:
            what = draw(st.integers(0, 2))
            if isinstance(parent, dict) and what == 0:
                parent.pop(path[-1], None)
            elif isinstance(parent, dict) and what == 1:
                parent[draw(st.text(max_size=6))] = draw(VALUES)
            elif isinstance(parent, dict | list):
                with contextlib.suppress(IndexError, TypeError):
                    parent[path[-1]] = draw(VALUES)
    return data


@settings(max_examples=300, deadline=None)
@given(mutated_drills())
def test_drill_values_only_raise_spec_errors(data: Any) -> None:
    try:
        spec = parse_drill(data, "drill.yaml", yaml.safe_dump(data))
    except SpecError as exc:
        assert str(exc).startswith("drill.yaml: ")
        assert "problem(s)" in str(exc)
    else:
        assert spec.shopserve.load.rate > 0


@st.composite
def mutated_texts(draw: st.DrawFn) -> str:
    """The drill's YAML with lines dropped, doubled or cut, and odd characters put in."""
    lines = DRILL_TEXT.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        what = draw(st.integers(0, 4))
        if what == 0:
            del lines[i]
        elif what == 1:
            lines.insert(i, lines[i])
        elif what == 2:
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        elif what == 3:
            at = draw(st.integers(0, len(lines[i])))
            odd = draw(st.sampled_from(["\t", ":", "- ", "{", "]", "&a", "*a", "!!python/name:x",
                                        "'", "\"", "#", "? ", "\x00", "\ufeff", "  "]))
            lines[i] = lines[i][:at] + odd + lines[i][at:]
        else:
            lines[i] = draw(st.text(max_size=20))
        if not lines:
            break
    return "\n".join(lines)


@settings(max_examples=200, deadline=None)
@given(st.one_of(mutated_texts(), st.binary(max_size=100).map(
    lambda b: b.decode("latin-1"))))
@example("title: x\nextensions: 3\n")
@example("title: x\nextensions: [{name: shopserve, load: 3}]\n")
@example("[1, 2]")
def test_drill_files_only_raise_spec_errors_naming_the_file(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "drill.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        try:
            load_drill(path)
        except SpecError as exc:
            assert str(exc).startswith(f"{path}: ")


def test_a_wrong_drill_value_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "drill.yaml"
    path.write_text(DRILL_TEXT.replace("multiplier: 5", "multiplier: 500"), encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_drill(path)
    line = next(i for i, t in enumerate(DRILL_TEXT.splitlines(), 1) if "multiplier: 5" in t)
    assert f"extensions.0.faults.0.multiplier (line {line})" in str(caught.value)


# --- real-data loaders and request logs -----------------------------------------------------

JUDGMENT_HEADER = "product_uid,product_title,search_term,relevance"
CLICK_HEADER = ",".join(["Label", *CLICK_NUMERIC, *CLICK_CATEGORICAL])
CELLS = st.one_of(st.sampled_from(["", "1", "2.5", "3", "-1", "x", "\"a,b\"", "\"", "nan",
                                   "1e400", "é", "\xff", "2026-11-29T10:00:00"]),
                  st.text(max_size=5))


@st.composite
def csv_bytes(draw: st.DrawFn, header: str) -> bytes:
    """CSV text under ``header`` (sometimes cut or changed), in UTF-8, Latin-1 or raw bytes."""
    names = header.split(",")
    if draw(st.booleans()):
        names = draw(st.lists(st.sampled_from([*names, "x", ""]), max_size=len(names) + 2))
    rows = [",".join(names)]
    for _ in range(draw(st.integers(0, 4))):
        width = draw(st.sampled_from([len(names), max(len(names) - 1, 0), len(names) + 1]))
        rows.append(",".join(draw(CELLS) for _ in range(width)))
    text = "\n".join(rows)
    encoding = draw(st.sampled_from(["utf-8", "latin-1", "utf-16", "raw"]))
    if encoding == "raw":
        return draw(st.binary(max_size=200))
    return text.encode(encoding, errors="replace")


def _refused_or_loaded(loader: Callable[[Path], pa.Table], suffix: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"input{suffix}"
        path.write_bytes(data)
        try:
            loader(path)
        except ShopserveError as exc:
            assert str(exc).startswith(f"{path}: ")


@settings(max_examples=150, deadline=None)
@given(csv_bytes(JUDGMENT_HEADER))
@example(f"{JUDGMENT_HEADER},relevance\n1,t,q,2,2\n".encode())
def test_judgment_files_load_or_are_refused(data: bytes) -> None:
    _refused_or_loaded(load_judgments, ".csv", data)


@settings(max_examples=100, deadline=None)
@given(csv_bytes(CLICK_HEADER))
def test_click_files_load_or_are_refused(data: bytes) -> None:
    _refused_or_loaded(load_clicks, ".csv", data)


ARROW_COLUMNS = st.sampled_from([
    pa.array(["536365", "C536379", None]), pa.array([1.0, 17850.0, None]),
    pa.array([1, -2, 3]), pa.array([2**64 - 1, 0, 1], pa.uint64()),
    pa.array(["2010-12-01 08:26:00", "x", None]), pa.array([b"\xff", b"a", b"b"]),
    pa.array([True, False, None]), pa.array([[1], [], None]),
    pa.array([{"a": 1}, {"a": 2}, None]), pa.array([None, None, None]),
    pa.array([1.5, float("nan"), float("inf")]),
    pa.array([1, 2, 3], pa.timestamp("ns")), pa.array(["a", "b", "a"]).dictionary_encode(),
])
RETAIL = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice",
          "CustomerID", "Country"]


@st.composite
def parquet_bytes(draw: st.DrawFn, names: list[str]) -> bytes:
    """A Parquet file whose columns have the expected names (mostly) and any types."""
    chosen = draw(st.lists(st.sampled_from([*names, "x"]), min_size=1, max_size=len(names) + 1))
    if draw(st.booleans()):
        chosen = [*names, *chosen[:1]]  # every column, and maybe one twice
    table = pa.Table.from_arrays([draw(ARROW_COLUMNS) for _ in chosen], names=chosen)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    raw = buf.getvalue()
    if draw(st.integers(0, 5)) == 0:
        raw = raw[: draw(st.integers(0, len(raw)))]
    return raw


@settings(max_examples=150, deadline=None)
@given(parquet_bytes(RETAIL))
def test_purchase_files_load_or_are_refused(data: bytes) -> None:
    _refused_or_loaded(load_purchases, ".parquet", data)


def _read_log(path: Path) -> pa.Table:
    return pa.table({"n": [len(k) for k, _ in iter_requests(path, "query", "timestamp")]})


LOG_HEADER = "query,timestamp"


@st.composite
def jsonl_logs(draw: st.DrawFn) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        row = draw(st.dictionaries(st.sampled_from(["query", "timestamp", "x"]), VALUES,
                                   max_size=3))
        if draw(st.booleans()):
            row.update(query=draw(VALUES), timestamp=draw(VALUES))
        line = json.dumps(row)
        lines.append(line if draw(st.integers(0, 6)) else line[: len(line) // 2])
    return "\n".join(lines).encode()


@settings(max_examples=150, deadline=None)
@given(csv_bytes(LOG_HEADER))
@example(b"query,timestamp\na,1\nb,0\n")
@example(b"query,timestamp\na,1e400\n")
def test_csv_request_logs_read_or_are_refused(data: bytes) -> None:
    _refused_or_loaded(_read_log, ".csv", data)


@settings(max_examples=150, deadline=None)
@given(jsonl_logs())
@example(b'{"query": {"a": 1}, "timestamp": 1}')
@example(b'{"query": "a", "timestamp": 18446744073709551615}\n{"query": "b", "timestamp": -1}')
def test_jsonl_request_logs_read_or_are_refused(data: bytes) -> None:
    _refused_or_loaded(_read_log, ".jsonl", data)


@settings(max_examples=100, deadline=None)
@given(parquet_bytes(["query", "timestamp"]))
def test_parquet_request_logs_read_or_are_refused(data: bytes) -> None:
    _refused_or_loaded(_read_log, ".parquet", data)
