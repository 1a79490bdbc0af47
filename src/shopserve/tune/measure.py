"""Measure one candidate through the real serving path: start ``shopserve serve`` with its
settings, find its saturation rate (closed loop), then the highest rate that meets the p99
(open loop, stepping down from saturation or the target).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from shopserve.errors import UnavailableError, UsageError
from shopserve.loadgen import LoadMode, LoadReport, load_spec, run_load
from shopserve.registry import ModelVersion, Registry
from shopserve.testing import ShopserveProcess
from shopserve.tune.candidates import Candidate, LoadStep, Trial
from shopserve.types import ModelKind

OPEN_FRACTIONS = (0.9, 0.6, 0.35)  # of the saturation rate, tried until one meets the p99
BODIES = 64


class MeasureSettings(BaseModel):
    """How each candidate is measured."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target_rps: float = Field(gt=0)
    p99_ms: float = Field(gt=0)
    headroom: float = Field(default=0.25, ge=0, lt=1)
    device: str = "cpu"
    step_s: float = Field(default=1.5, gt=0, le=60)  # seconds of load per step
    connections: int = Field(default=32, ge=1, le=1024)  # closed-loop saturation run
    rows_per_request: int = Field(default=10, ge=1, le=1000)
    home: Path | None = None
    startup_timeout_s: float = Field(default=60.0, gt=0)


@dataclass(frozen=True)
class Workload:
    """What a shop page sends this model: the endpoint path and a set of request bodies."""

    endpoint: str
    path: str
    bodies: tuple[bytes, ...]


def workload(registry: Registry, version: ModelVersion, rows: int) -> Workload:
    """Requests built from the version's own held-out data (``eval.parquet``)."""
    name = version.name
    if "eval.parquet" not in version.files:
        raise UsageError(f"{version.ref} has no eval.parquet to build requests from; tune "
                         "measures the reference model kinds (rank, search, recommend)")
    table = pq.read_table(registry.load(version.ref).files["eval.parquet"])
    if version.kind is ModelKind.RANK:
        data = table.drop_columns([c for c in ("label",) if c in table.column_names]).to_pylist()
        bodies = [{"model": name, "candidates": [data[(i * rows + j) % len(data)]
                                                for j in range(rows)]} for i in range(BODIES)]
        return Workload(name, "/v1/rank", tuple(orjson.dumps(b) for b in bodies))
    column = {"search": "query", "recommend": "customer_id"}.get(version.kind.value)
    if column is None or column not in table.column_names:
        raise UsageError(f"{version.ref} is a {version.kind.value} model; tune measures rank, "
                         "search and recommend models through their /v1 endpoints")
    values = [v for v in dict.fromkeys(table.column(column).to_pylist()) if v][:BODIES]
    field = "query" if column == "query" else "customer"
    asks: list[dict[str, Any]] = [{"model": name, field: v, "k": 10} for v in values]
    return Workload(name, f"/v1/{version.kind.value}", tuple(orjson.dumps(b) for b in asks))


def deployment(ref: str, c: Candidate, device: str, home: Path | None,
               measuring: bool) -> dict[str, Any]:
    """The deployment for ``c``; while measuring, without caches or fallbacks that hide load."""
    model: dict[str, Any] = {"ref": ref, "batching": {"max_batch_size": c.max_batch_size,
                                                      "max_queue_delay_ms": c.max_queue_delay_ms}}
    spec: dict[str, Any] = {"models": [model], "replicas": c.replicas,
                            "server": {"threads": c.threads, "device": device}}
    if measuring:
        model.update(cache=False, fallback={"last_good": False})
        spec["cache"] = {"size": 0}
    if home is not None:
        spec["home"] = str(home)
    return spec


def measure(ref: str, c: Candidate, load: Workload, settings: MeasureSettings,
            run_dir: Path) -> Trial:
    """Serve ``ref`` with ``c`` and measure it; the server is always stopped afterwards."""
    started = time.monotonic()
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = deployment(ref, c, settings.device, settings.home, measuring=True)
    try:
        server = ShopserveProcess.from_spec(spec, run_dir,
                                            startup_timeout_s=settings.startup_timeout_s).start()
    except RuntimeError as exc:
        raise UnavailableError(f"could not serve {ref} with {c.label()}: {exc}") from exc
    try:
        steps, sat = _steps(server.url, load, settings)
    finally:
        server.stop()
    passing = [s for s in steps if s.passed and s.offered_rps is not None]
    best = max(passing, key=lambda s: s.offered_rps or 0.0) if passing else None
    p99s = [s.p99_ms for s in steps if s.p99_ms is not None]
    return Trial(candidate=c, saturation_rps=round(sat.rps, 1),
                 capacity_rps=(best.offered_rps or 0.0) if best else 0.0,
                 p99_ms_at_capacity=best.p99_ms if best else None,
                 best_p99_ms=min(p99s) if p99s else None,
                 steps=steps, seconds=round(time.monotonic() - started, 1))


def _steps(url: str, load: Workload, s: MeasureSettings) -> tuple[list[LoadStep], LoadReport]:
    common = {"url": url, "path": load.path, "bodies": load.bodies,
              "timeout_s": max(1.0, s.p99_ms * 20 / 1000)}
    sat = run_load(load_spec(**common, connections=s.connections, duration_s=s.step_s,
                             warmup_s=min(0.5, s.step_s / 3)))
    steps = [_step(sat, None, s)]
    if sat.ok == 0:
        return steps, sat
    want = s.target_rps / (1 - s.headroom)  # one machine with the stated headroom
    rates = [min(f * sat.rps, want) for f in OPEN_FRACTIONS]
    for rate in dict.fromkeys(round(r, 1) for r in rates):
        report = run_load(load_spec(**common, mode=LoadMode.OPEN, rate=rate,
                                    connections=max(s.connections * 2, 64),
                                    duration_s=s.step_s))
        steps.append(_step(report, rate, s))
        if steps[-1].passed:
            break
    return steps, sat


def _step(r: LoadReport, offered: float | None, s: MeasureSettings) -> LoadStep:
    answered = r.ok > 0
    passed = (offered is not None and answered and r.error_count == 0
              and r.p99_ms <= s.p99_ms and r.rps >= 0.95 * offered)
    return LoadStep(offered_rps=None if offered is None else round(offered, 1),
                    achieved_rps=round(r.rps, 1),
                    p50_ms=round(r.p50_ms, 2) if answered else None,
                    p99_ms=round(r.p99_ms, 2) if answered else None,
                    p999_ms=round(r.p999_ms, 2) if answered else None,
                    errors=r.error_count, passed=passed)
