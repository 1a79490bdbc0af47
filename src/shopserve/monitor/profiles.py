"""Profiles of a model version's inputs and outputs: the reference one from its ``eval.parquet``
(cached as JSON under the home), and the same binning applied to live or batch values.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shopserve.errors import NotFoundError
from shopserve.registry import Registry
from shopserve.types import ModelKind

EVAL_FILE = "eval.parquet"
SCORE = "score"
NUMERIC_BINS = 10
TOP_CATEGORIES = 20
SAMPLE_SIZE = 2000  # raw reference values kept per numeric feature (for the KS test)
REFERENCE_ROWS = 2000  # eval rows scored for the reference profile
SCORE_CHUNK = 32  # rows per model call when scoring them (the default max batch size)
PROFILE_FORMAT = 1


@dataclass(frozen=True)
class FeatureSpec:
    """One profiled column: a name and whether it is numeric or categorical."""

    name: str
    numeric: bool


def profiled_features(kind: ModelKind, config: Mapping[str, Any]) -> list[FeatureSpec]:
    """The inputs profiled for a model kind (the score is profiled as well, separately)."""
    if kind is ModelKind.RANK:
        feats = config.get("features") or {}
        return ([FeatureSpec(f["name"], True) for f in feats.get("numeric", [])]
                + [FeatureSpec(f["name"], False) for f in feats.get("categorical", [])])
    if kind is ModelKind.SEARCH:
        return [FeatureSpec("query_chars", True), FeatureSpec("query_terms", True)]
    if kind is ModelKind.RECOMMEND:
        return [FeatureSpec("customer", False)]
    return []


def rank_values(features: Sequence[FeatureSpec], row: Mapping[str, Any]) -> list[Any]:
    out: list[Any] = []
    for f in features:
        v = row.get(f.name)
        if f.numeric:
            try:
                out.append(float(v) if v is not None else float("nan"))
            except (TypeError, ValueError):
                out.append(float("nan"))
        else:
            out.append("" if v is None else str(v))
    return out


def query_values(query: str) -> list[Any]:
    return [float(len(query)), float(len(query.split()))]


def customer_values(customer: str | None) -> list[Any]:
    return ["given" if customer else "anonymous"]


@dataclass
class ColumnProfile:
    """Binned counts of one column; numeric columns also keep a raw sample for KS."""

    name: str
    numeric: bool
    edges: list[float]  # inner bin edges (numeric)
    categories: list[str]  # top categories (categorical); everything else is "other"
    counts: list[float]
    sample: list[float]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "numeric": self.numeric, "edges": self.edges,
                "categories": self.categories, "counts": self.counts, "sample": self.sample}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ColumnProfile:
        return cls(str(data["name"]), bool(data["numeric"]), list(data["edges"]),
                   list(data["categories"]), list(data["counts"]), list(data["sample"]))


@dataclass
class Profile:
    """The reference (or observed) distributions of one model version."""

    model: str
    version: int
    kind: str
    rows: int
    columns: list[ColumnProfile]  # inputs first, then the score

    def column(self, name: str) -> ColumnProfile:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {"format": PROFILE_FORMAT, "model": self.model, "version": self.version,
                "kind": self.kind, "rows": self.rows,
                "columns": [c.to_json() for c in self.columns]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Profile:
        return cls(str(data["model"]), int(data["version"]), str(data["kind"]), int(data["rows"]),
                   [ColumnProfile.from_json(c) for c in data["columns"]])


def reference_column(name: str, numeric: bool, values: Sequence[Any]) -> ColumnProfile:
    """Bins chosen from the reference values themselves (deciles, or the top categories)."""
    if numeric:
        arr = np.asarray(values, dtype=np.float64)
        finite = arr[np.isfinite(arr)]
        if len(finite):
            qs = np.quantile(finite, np.linspace(0, 1, NUMERIC_BINS + 1)[1:-1])
            edges = sorted({float(q) for q in qs})
        else:
            edges = []
        rng = np.random.default_rng(0)
        sample = finite if len(finite) <= SAMPLE_SIZE else rng.choice(finite, SAMPLE_SIZE, False)
        return ColumnProfile(name, True, edges, [], numeric_counts(edges, finite).tolist(),
                             [float(v) for v in sample])
    labels, freq = np.unique(np.asarray([str(v) for v in values], dtype=object),
                             return_counts=True)
    order = np.argsort(-freq, kind="stable")[:TOP_CATEGORIES]
    categories = [str(labels[i]) for i in order]
    col = ColumnProfile(name, False, [], categories, [], [])
    col.counts = categorical_counts(col, values).tolist()
    return col


def numeric_counts(edges: Sequence[float], values: np.ndarray) -> np.ndarray:
    finite = values[np.isfinite(values)]
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), finite, side="right")
    return np.bincount(idx, minlength=len(edges) + 1).astype(np.float64)


def categorical_counts(col: ColumnProfile, values: Sequence[Any]) -> np.ndarray:
    index = {c: i for i, c in enumerate(col.categories)}
    other = len(col.categories)
    idx = np.asarray([index.get(str(v), other) for v in values], dtype=np.int64)
    return np.bincount(idx, minlength=other + 1).astype(np.float64)


def observed_profile(reference: Profile, table: Mapping[str, Sequence[Any]]) -> Profile:
    """``table`` (column name -> values) binned like ``reference``."""
    columns = []
    rows = 0
    for ref in reference.columns:
        values = table.get(ref.name, [])
        rows = max(rows, len(values))
        if ref.numeric:
            arr = np.asarray(values, dtype=np.float64)
            finite = arr[np.isfinite(arr)]
            columns.append(ColumnProfile(ref.name, True, ref.edges, [],
                                         numeric_counts(ref.edges, finite).tolist(),
                                         [float(v) for v in finite]))
        else:
            columns.append(ColumnProfile(ref.name, False, [], ref.categories,
                                         categorical_counts(ref, values).tolist(), []))
    return Profile(reference.model, reference.version, reference.kind, rows, columns)


def batch_table(kind: ModelKind, config: Mapping[str, Any], pipe: Any,
                table: pa.Table, limit: int = REFERENCE_ROWS) -> dict[str, list[Any]]:
    """Profiled inputs and model scores of (up to ``limit`` rows of) a batch of model inputs."""
    table = table.slice(0, limit)
    features = profiled_features(kind, config)
    out: dict[str, list[Any]] = {f.name: [] for f in features}
    if kind is ModelKind.RANK:
        rows = table.to_pylist()
        for row in rows:
            for f, v in zip(features, rank_values(features, row), strict=True):
                out[f.name].append(v)
        # in serving-sized chunks: one 2 000-row call grows ONNX Runtime's memory arena
        # (never given back) by ~50 MiB in every replica that computes a reference profile
        out[SCORE] = [float(s) for i in range(0, len(rows), SCORE_CHUNK)
                      for s in pipe.rank(rows[i:i + SCORE_CHUNK])]
    elif kind is ModelKind.SEARCH:
        queries = sorted({str(q) for q in table.column("query").to_pylist()})[:limit]
        for q in queries:
            for f, v in zip(features, query_values(q), strict=True):
                out[f.name].append(v)
        hits = pipe.search(queries, 1) if queries else []
        out[SCORE] = [float(h[0].score) for h in hits if h]
    elif kind is ModelKind.RECOMMEND:
        column = "customer_id" if "customer_id" in table.column_names else "customer"
        customers = [None if c is None else str(c) for c in table.column(column).to_pylist()]
        for c in customers:
            out["customer"].append(customer_values(c)[0])
        hits = pipe.recommend(customers, 1) if customers else []
        out[SCORE] = [float(h[0].score) for h in hits if h]
    return out


def reference_profile(registry: Registry, ref: str, cache_dir: Path | None = None,
                      pipe: Any = None) -> Profile:
    """The reference profile of ``ref``, from its ``eval.parquet``; cached as JSON.

    ``pipe``: the version's pipeline when the caller has it loaded already (a replica), so
    that a second copy of the model is not loaded just to score the evaluation rows.
    """
    meta = registry.get(ref)
    record = meta.files.get(EVAL_FILE)
    if record is None or not profiled_features(meta.kind, meta.config):
        raise NotFoundError(f"{meta.ref} has no {EVAL_FILE} with profiled inputs; drift is "
                            f"measured for rank, search and recommend versions only")
    cache = cache_dir or registry.home / "monitor" / "profiles"
    path = cache / f"{meta.name}@{meta.version}-{record.sha256.removeprefix('sha256:')[:16]}.json"
    with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
        return Profile.from_json(json.loads(path.read_text(encoding="utf-8")))
    from shopserve.models import load_pipeline

    loaded = registry.load(ref)
    if pipe is None:
        pipe = load_pipeline(meta.kind, meta.config, loaded.files)
    # ParquetFile, not read_table: read_table goes through pyarrow.dataset, whose libraries
    # and pools added ~50 MiB to every replica that computed a profile (measured)
    with pq.ParquetFile(loaded.files[EVAL_FILE]) as source:
        table = source.read(use_threads=False)
    values = batch_table(meta.kind, meta.config, pipe, table)
    columns = [reference_column(f.name, f.numeric, values[f.name])
               for f in profiled_features(meta.kind, meta.config)]
    columns.append(reference_column(SCORE, True, values[SCORE]))
    profile = Profile(meta.name, meta.version, meta.kind.value,
                      max((len(v) for v in values.values()), default=0), columns)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(profile.to_json()), encoding="utf-8")
    os.replace(tmp, path)
    return profile
