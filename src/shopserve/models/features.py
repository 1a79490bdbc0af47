"""The CTR feature spec and the featurizer that turns rows into the ranking graph's inputs.

Numeric columns become ``dense`` (float32, log-squashed then standardized, missing = mean) and
categorical columns become ``cat`` (int64, hashed into per-column bucket ranges, 0 = missing).
"""

from __future__ import annotations

import enum
import functools
import itertools
import operator
import zlib
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, model_validator

from shopserve.errors import InputError

Rows: TypeAlias = Sequence[dict[str, Any]] | pa.RecordBatch | pa.Table
_NUMBER_TYPES = frozenset({float, int, type(None)})  # exact types: bool is refused
_CATEGORY_TYPES = frozenset({str, int, type(None)})
CLIP = 10.0  # standardized values beyond this are outliers; clipping keeps the FM stable


class NumericTransform(enum.StrEnum):
    NONE = "none"
    LOG = "log"  # sign(x) * log1p(|x|): counts and prices span orders of magnitude


class NumericFeature(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    transform: NumericTransform = NumericTransform.LOG
    mean: float = 0.0
    std: float = Field(default=1.0, gt=0.0)


class CategoricalFeature(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    buckets: int = Field(default=1000, ge=2)


class FeatureSpec(BaseModel):
    """Which columns feed the ranking model and how; stored in the version's config."""

    model_config = ConfigDict(frozen=True)

    numeric: tuple[NumericFeature, ...]
    categorical: tuple[CategoricalFeature, ...]

    @model_validator(mode="after")
    def _check(self) -> FeatureSpec:
        if not self.numeric or not self.categorical:
            raise ValueError("a CTR feature spec needs at least one numeric and one categorical")
        names = [f.name for f in self.numeric] + [f.name for f in self.categorical]
        if len(set(names)) != len(names):
            raise ValueError(f"feature names must be unique, got {names}")
        return self

    @property
    def offsets(self) -> np.ndarray:
        sizes = [f.buckets for f in self.categorical]
        return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)

    @property
    def total_buckets(self) -> int:
        return int(sum(f.buckets for f in self.categorical))

    def fitted(self, rows: Rows) -> FeatureSpec:
        """This spec with each numeric column's mean and std measured on ``rows``."""
        numeric = []
        for feat in self.numeric:
            raw = _transform(feat, _numeric_column(rows, feat.name))
            seen = raw[~np.isnan(raw)]
            mean = float(seen.mean()) if len(seen) else 0.0
            std = float(seen.std()) if len(seen) > 1 else 1.0
            std = std if std > 1e-9 else 1.0
            numeric.append(feat.model_copy(update={"mean": mean, "std": std}))
        return self.model_copy(update={"numeric": tuple(numeric)})


def rare_bucket_remap(spec: FeatureSpec, cat: np.ndarray, min_count: int) -> np.ndarray:
    """Map of every bucket to itself, except those seen fewer than ``min_count`` times in
    ``cat`` (training codes), which go to their column's missing bucket: a hashed level too rare
    to learn from shares the "unknown" weights instead of memorizing a handful of rows.
    """
    counts = np.bincount(cat.ravel(), minlength=spec.total_buckets)
    column_start = np.repeat(spec.offsets, [f.buckets for f in spec.categorical])
    remap = np.arange(spec.total_buckets, dtype=np.int64)
    rare = counts < min_count
    remap[rare] = column_start[rare]
    return remap


def featurize(spec: FeatureSpec, rows: Rows) -> dict[str, np.ndarray]:
    """``{"dense": float32 [n, n_dense], "cat": int64 [n, n_cat]}`` for ``rows``."""
    return featurizer(spec)(rows)


@functools.lru_cache(maxsize=64)
def featurizer(spec: FeatureSpec) -> Featurizer:
    """The compiled ``Featurizer`` of ``spec`` (one per spec, with its category cache)."""
    return Featurizer(spec)


class Featurizer:
    """``featurize`` for one spec, with everything that does not depend on the rows done once.

    Rows given as dicts (what the HTTP API receives) take a fast path: one pass over the rows
    that checks each value's type as it reads it, category codes from a bounded cache of the
    values already seen, and the numeric transform on all columns at once. Anything that path
    does not accept (a wrong type, a missing field, infinity, a dict subclass) goes to the
    general path, which raises the error naming the row and field. Both give identical arrays.
    """

    def __init__(self, spec: FeatureSpec, cache_limit: int = 1 << 16) -> None:
        """``cache_limit``: values remembered per categorical feature (forgotten when full)."""
        self.spec = spec
        self.numeric = tuple(f.name for f in spec.numeric)
        self.means = np.array([f.mean for f in spec.numeric], dtype=np.float64)
        self.stds = np.array([f.std for f in spec.numeric], dtype=np.float64)
        log = np.array([f.transform is NumericTransform.LOG for f in spec.numeric])
        self.log_mask: np.ndarray | None = None if log.all() or not log.any() else log
        self.log_any = bool(log.any())
        offsets = [int(o) for o in spec.offsets]
        # (field, cache of value -> offset + bucket, code of a missing value)
        self.categorical = tuple((f.name, {None: offsets[j]}, offsets[j])
                                 for j, f in enumerate(spec.categorical))
        self._numeric_values = _getter(self.numeric)
        self._category_values = _getter(tuple(c[0] for c in self.categorical))
        self._learners = tuple(_learner(f, offsets[j], self.categorical[j][1], cache_limit)
                               for j, f in enumerate(spec.categorical))

    def __call__(self, rows: Rows) -> dict[str, np.ndarray]:
        if isinstance(rows, list):
            fast = self._dict_rows(rows)
            if fast is not None:
                return fast
        return _general(self.spec, rows)

    def _dict_rows(self, rows: list[Any]) -> dict[str, np.ndarray] | None:
        """The fast path: C-level maps over the rows and columns, Python only for new values."""
        if rows and set(map(type, rows)) != {dict}:
            return None
        try:
            numeric = list(map(self._numeric_values, rows))
            categorical = list(map(self._category_values, rows))
        except KeyError:
            return None
        if not set(map(type, itertools.chain.from_iterable(numeric))) <= _NUMBER_TYPES:
            return None
        try:
            x = np.array(numeric, dtype=np.float64).reshape(len(rows), len(self.numeric))
        except OverflowError:
            return None
        if np.isinf(x).any():
            return None
        columns = list(zip(*categorical, strict=True)) or [()] * len(self.categorical)
        codes = []
        for (_, seen, missing), learn, column in zip(self.categorical, self._learners, columns,
                                                    strict=True):
            if not set(map(type, column)) <= _CATEGORY_TYPES:
                return None
            coded = list(map(seen.get, column))
            if None in coded:
                try:
                    coded = [c if c is not None else missing if v is None else learn(v)
                             for c, v in zip(coded, column, strict=True)]
                except UnicodeEncodeError:
                    return None
            codes.append(coded)
        cat = np.array(codes, dtype=np.int64).T.reshape(len(rows), len(self.categorical))
        return {"dense": self._dense(x), "cat": np.ascontiguousarray(cat)}

    def _dense(self, x: np.ndarray) -> np.ndarray:
        """Log-squash, standardize, missing to 0, clip: the same float64 operations, in place
        on all columns at once, as the general path does column by column."""
        if self.log_any:
            squashed = np.log1p(np.abs(x))
            squashed *= np.sign(x)
            x = squashed if self.log_mask is None else np.where(self.log_mask, squashed, x)
        else:
            x = x.copy()
        x -= self.means
        x /= self.stds
        x[np.isnan(x)] = 0.0
        np.maximum(x, -CLIP, out=x)
        np.minimum(x, CLIP, out=x)
        return x.astype(np.float32)


def _getter(names: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """``row -> (row[name] for name in names)`` in C (itemgetter), always a tuple."""
    if len(names) == 1:
        one = operator.itemgetter(names[0])
        return lambda row: (one(row),)
    return operator.itemgetter(*names)


def _learner(feat: CategoricalFeature, offset: int, seen: dict[Any, int],
             limit: int) -> Callable[[str | int], int]:
    """Code a value not in ``seen`` yet, and remember it (forgetting all when ``limit`` is hit)."""
    name, buckets = feat.name, feat.buckets

    def learn(value: str | int) -> int:
        code = offset + bucket_of(name, str(value), buckets)
        if len(seen) >= limit:
            seen.clear()
            seen[None] = offset  # a missing value's code, kept so lookups find it
        seen[value] = code
        return code

    return learn


def _general(spec: FeatureSpec, rows: Rows) -> dict[str, np.ndarray]:
    """Any rows (dicts or Arrow), column by column, with an error naming each bad value."""
    dense = np.zeros((_num_rows(rows), len(spec.numeric)), dtype=np.float32)
    for j, num in enumerate(spec.numeric):
        values = (_transform(num, _numeric_column(rows, num.name)) - num.mean) / num.std
        dense[:, j] = np.clip(np.nan_to_num(values, nan=0.0), -CLIP, CLIP)
    cat = np.zeros((_num_rows(rows), len(spec.categorical)), dtype=np.int64)
    for j, (feat, offset) in enumerate(zip(spec.categorical, spec.offsets, strict=True)):
        cat[:, j] = offset + _category_codes(rows, feat)
    return {"dense": dense, "cat": cat}


def _num_rows(rows: Rows) -> int:
    return rows.num_rows if isinstance(rows, pa.RecordBatch | pa.Table) else len(rows)


def _transform(feat: NumericFeature, values: np.ndarray) -> np.ndarray:
    if feat.transform is NumericTransform.LOG:
        out: np.ndarray = np.sign(values) * np.log1p(np.abs(values))
        return out
    return values


def _arrow_column(rows: pa.RecordBatch | pa.Table, name: str) -> pa.Array | pa.ChunkedArray:
    if name not in rows.schema.names:
        raise InputError(f"missing field {name!r}; the rows have {rows.schema.names}")
    return rows.column(name)


def _dict_column(rows: Sequence[dict[str, Any]], name: str) -> list[Any]:
    values = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InputError(f"row {i}: expected an object of fields, got {type(row).__name__}")
        if name not in row:
            raise InputError(f"row {i}: missing field {name!r}")
        values.append(row[name])
    return values


def _numeric_column(rows: Rows, name: str) -> np.ndarray:
    """Float64 values of ``name``, NaN where missing; refuses text and infinities."""
    if isinstance(rows, pa.RecordBatch | pa.Table):
        col = _arrow_column(rows, name)
        kind = col.type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)):
            raise InputError(f"field {name!r}: expected a number, got column type {kind}")
        values = np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False))
    else:
        raw = _dict_column(rows, name)
        for i, v in enumerate(raw):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise InputError(f"row {i}: field {name!r}: expected a number, got {v!r}")
        values = np.array([np.nan if v is None else v for v in raw], dtype=np.float64)
    if np.isinf(values).any():
        raise InputError(f"field {name!r}: contains infinity")
    return values.astype(np.float64, copy=False)


def bucket_of(name: str, value: str, buckets: int) -> int:
    """Stable bucket in ``1..buckets-1`` for a category value (0 is kept for missing)."""
    return 1 + zlib.crc32(f"{name}\x1f{value}".encode()) % (buckets - 1)


def _category_codes(rows: Rows, feat: CategoricalFeature) -> np.ndarray:
    if isinstance(rows, pa.RecordBatch | pa.Table):
        col = _arrow_column(rows, feat.name)
        kind = col.type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
                or pa.types.is_integer(kind) or pa.types.is_null(kind)
                or pa.types.is_dictionary(kind)):
            raise InputError(
                f"field {feat.name!r}: expected text or integer, got column type {kind}"
            )
        encoded = pc.dictionary_encode(pc.cast(col, pa.string()))
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        table = np.array([bucket_of(feat.name, v, feat.buckets)
                          for v in encoded.dictionary.to_pylist()] + [0], dtype=np.int64)
        idx = pc.fill_null(encoded.indices, len(encoded.dictionary)).to_numpy(zero_copy_only=False)
        return table[np.asarray(idx, dtype=np.int64)]
    raw = _dict_column(rows, feat.name)
    cache: dict[str, int] = {}
    codes = np.zeros(len(raw), dtype=np.int64)
    for i, v in enumerate(raw):
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, str | int):
            raise InputError(f"row {i}: field {feat.name!r}: expected text or integer, got {v!r}")
        key = str(v)
        if key not in cache:
            cache[key] = bucket_of(feat.name, key, feat.buckets)
        codes[i] = cache[key]
    return codes
