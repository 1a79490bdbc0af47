"""Drift of live (or batch) traffic against a version's reference profile: PSI and a two-sample
test per input and for the score; and the sampled, rolling live profile each replica keeps.
"""

from __future__ import annotations

import os
import random
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from shopserve.monitor import stats
from shopserve.monitor.profiles import (
    SCORE,
    FeatureSpec,
    Profile,
    customer_values,
    observed_profile,
    profiled_features,
    query_values,
    rank_values,
)
from shopserve.monitor.settings import MonitorSettings
from shopserve.types import ModelKind


@dataclass(frozen=True)
class ColumnDrift:
    """How far one column moved from its reference."""

    column: str
    numeric: bool
    psi: float
    test: str
    statistic: float
    p_value: float
    reference_n: int
    live_n: int
    drifted: bool


@dataclass(frozen=True)
class DriftReport:
    """Every column of one version, and whether any drifted."""

    model: str
    version: int
    live_rows: int
    columns: list[ColumnDrift]

    @property
    def alert(self) -> bool:
        return any(c.drifted for c in self.columns)

    @property
    def max_psi(self) -> float:
        return max((c.psi for c in self.columns), default=0.0)

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "live_rows": self.live_rows,
                "alert": self.alert, "max_psi": round(self.max_psi, 6),
                "columns": [asdict(c) for c in self.columns]}


def compare(reference: Profile, live: Mapping[str, Sequence[Any]],
            settings: MonitorSettings) -> DriftReport:
    """PSI and KS (numeric) or chi-square (categorical) of ``live`` against the reference."""
    observed = observed_profile(reference, live)
    out = []
    for ref, cur in zip(reference.columns, observed.columns, strict=True):
        live_n = int(sum(cur.counts))
        if ref.numeric:
            test = stats.ks_two_sample(np.asarray(ref.sample), np.asarray(cur.sample))
        else:
            test = stats.chi_square_two_sample(np.asarray(ref.counts), np.asarray(cur.counts))
        value = stats.psi(np.asarray(ref.counts), np.asarray(cur.counts))
        drifted = (live_n >= settings.drift_min_samples and value >= settings.drift_psi
                   and test.p_value < settings.drift_p)
        out.append(ColumnDrift(ref.name, ref.numeric, round(value, 6), test.test,
                               round(test.statistic, 6), float(f"{test.p_value:.6g}"),
                               int(sum(ref.counts)), live_n, drifted))
    return DriftReport(reference.model, reference.version, observed.rows, out)


class LiveProfile:
    """Sampled recent traffic of one replica, per served version: a bounded ring of rows.

    ``record`` is on the request path: it draws one random number, and only for sampled
    requests (``drift_sample``) builds a row of values.
    """

    def __init__(self, settings: MonitorSettings, directory: Path) -> None:
        self.settings = settings
        self.path = directory / f"{os.getpid()}.json"
        self.rings: dict[str, deque[list[Any]]] = {}
        self.columns: dict[str, list[FeatureSpec]] = {}
        self.changed = False

    def watch(self, model: str, version: int, kind: ModelKind, config: Mapping[str, Any]) -> None:
        features = profiled_features(kind, config)
        if features:
            key = f"{model}@{version}"
            self.columns[key] = features
            self.rings[key] = deque(maxlen=self.settings.drift_window)

    def record(self, model: str, version: int, op: str, payload: Any, result: Any) -> None:
        if random.random() >= self.settings.drift_sample:
            return
        key = f"{model}@{version}"
        ring = self.rings.get(key)
        if ring is None:
            return
        features = self.columns[key]
        if op == "rank":
            for row, score in zip(payload[: self.settings.drift_rows], result, strict=False):
                ring.append([*rank_values(features, row), float(score)])
        elif op in ("search", "recommend"):
            top = float(result[0]["score"]) if result else float("nan")
            values = query_values(payload[0]) if op == "search" else customer_values(payload[0])
            ring.append([*values, top])
        self.changed = True

    def snapshot(self) -> bytes | None:
        """The rings as JSON, or None when nothing was recorded since the last snapshot."""
        if not self.changed:
            return None
        self.changed = False
        data = {key: {"columns": [f.name for f in self.columns[key]] + [SCORE],
                      "rows": list(ring)} for key, ring in self.rings.items()}
        return orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)

    def write(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.path)


def read_live(directory: Path, window_s: float) -> dict[str, dict[str, list[Any]]]:
    """Every replica's recent rows merged: ``{"model@version": {column: values}}``."""
    merged: dict[str, dict[str, list[Any]]] = {}
    now = time.time()
    for path in sorted(directory.glob("*.json")):
        try:
            if now - path.stat().st_mtime > window_s:
                continue
            data = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        for key, part in data.items():
            table = merged.setdefault(key, {c: [] for c in part["columns"]})
            for row in part["rows"]:
                for column, value in zip(part["columns"], row, strict=True):
                    table.setdefault(column, []).append(value)
    return merged
