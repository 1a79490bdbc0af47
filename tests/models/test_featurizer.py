"""The CTR featurizer: its fast path for dict rows matches the general path, bit for bit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shopserve.errors import InputError
from shopserve.models.features import (
    CategoricalFeature,
    FeatureSpec,
    Featurizer,
    NumericFeature,
    _general,
)

SPEC = FeatureSpec(
    numeric=(NumericFeature(name="I1", mean=0.3, std=1.7),
             NumericFeature(name="I2", transform="none", mean=-2.0, std=3.0),
             NumericFeature(name="I3", mean=5.0, std=0.5)),
    categorical=(CategoricalFeature(name="C1", buckets=7), CategoricalFeature(name="C2")))

NUMBERS = st.one_of(st.none(), st.integers(-10**12, 10**12),
                    st.floats(allow_nan=True, allow_infinity=False), st.sampled_from([-0.0, 0.0]))
CATEGORIES = st.one_of(st.none(), st.text(max_size=8), st.integers(-50, 50))
BAD = st.sampled_from([True, "3", [1], {"a": 1}, 1.5, float("inf"), -float("inf")])


def row(numbers: list[Any], categories: list[Any]) -> dict[str, Any]:
    return {"I1": numbers[0], "I2": numbers[1], "I3": numbers[2],
            "C1": categories[0], "C2": categories[1]}


ROWS = st.lists(st.builds(row, st.lists(NUMBERS, min_size=3, max_size=3),
                          st.lists(CATEGORIES, min_size=2, max_size=2)), max_size=40)


def outcome(fn: Any, rows: Any) -> Any:
    try:
        out = fn(rows)
    except InputError as exc:
        return ("error", str(exc))
    return {k: (v.dtype.str, v.shape, v.tobytes()) for k, v in out.items()}


@settings(max_examples=300, deadline=None)
@given(ROWS)
def test_fast_path_is_bit_identical_to_the_general_path(rows: list[dict[str, Any]]) -> None:
    fast = Featurizer(SPEC)
    assert outcome(fast, rows) == outcome(lambda r: _general(SPEC, r), rows)
    assert outcome(fast, rows) == outcome(fast, rows)  # the second call hits the value cache


@settings(max_examples=200, deadline=None)
@given(ROWS.filter(bool), st.data())
def test_bad_values_get_the_general_paths_error(rows: list[dict[str, Any]],
                                                 data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(rows) - 1))
    field = data.draw(st.sampled_from(["I1", "I2", "I3", "C1", "C2", "missing"]))
    rows[i] = dict(rows[i])
    if field == "missing":
        del rows[i]["I2"]
    else:
        rows[i][field] = data.draw(BAD)
    fast = Featurizer(SPEC)
    assert outcome(fast, rows) == outcome(lambda r: _general(SPEC, r), rows)


def test_arrow_rows_and_dict_rows_agree() -> None:
    rows = [row([1.5, None, 3], ["a", None]), row([-2.0, 4.0, None], [7, "b"])]
    table = pa.table({k: [r[k] if k != "C1" or r[k] is None else str(r[k]) for r in rows]
                      for k in rows[0]})
    got, want = Featurizer(SPEC)(rows), Featurizer(SPEC)(table)
    for key in ("dense", "cat"):
        np.testing.assert_array_equal(got[key], want[key])


def test_the_value_cache_is_bounded() -> None:
    fast = Featurizer(SPEC, cache_limit=16)
    codes = [fast([row([0, 0, 0], [f"v{i}", None])])["cat"][0, 0] for i in range(100)]
    assert len(fast.categorical[0][1]) <= 16 + 1
    again = [fast([row([0, 0, 0], [f"v{i}", None])])["cat"][0, 0] for i in range(100)]
    assert codes == again


@pytest.mark.parametrize("rows", [[], [row([1, 2, 3], ["x", "y"])]])
def test_empty_and_single_rows_have_the_right_shapes(rows: list[dict[str, Any]]) -> None:
    out = Featurizer(SPEC)(rows)
    assert out["dense"].shape == (len(rows), 3) and out["cat"].shape == (len(rows), 2)
