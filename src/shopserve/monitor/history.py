"""The service's recent history, kept by the supervisor: every ``interval_s`` it reads the
metrics summed over all replicas, adds one point (requests/s, error rate, p50/p99, cache hit
ratio) to bounded rings, sets the replica gauges, and writes the whole as one JSON file that
any replica serves to the dashboard.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, multiprocess

from shopserve.monitor import metrics

log = logging.getLogger("shopserve.monitor")
FINE_POINTS = 1800  # one per interval: an hour at 2 s
COARSE_EVERY = 30  # fine points per coarse point (a minute at 2 s)
COARSE_POINTS = 1440  # a day of minutes
TRAFFIC = ("rank", "search", "recommend", "feedback")
SERIES = ("rps", "error_rate", "p50_ms", "p99_ms", "cache_hit_ratio")


def is_traffic(endpoint: str) -> bool:
    """Model traffic, not health checks, scrapes or dashboard polls."""
    return endpoint in TRAFFIC or endpoint.endswith("/infer")


@dataclass
class Totals:
    """Cumulative counters summed over all replicas at one moment."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count
    cache_hits: float = 0.0
    cache_lookups: float = 0.0
    by_version: dict[str, dict[str, float]] = field(default_factory=dict)


def read_totals() -> Totals:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    t = Totals()
    for family in registry.collect():
        for s in family.samples:
            labels = s.labels
            if s.name == "shopserve_requests_total" and is_traffic(labels.get("endpoint", "")):
                t.requests += s.value
                failed = labels.get("status", "").startswith("5")
                t.errors += s.value if failed else 0.0
                if labels.get("version"):
                    key = f"{labels['model']}@{labels['version']}"
                    per = t.by_version.setdefault(key, {"requests": 0.0, "errors": 0.0})
                    per["requests"] += s.value
                    per["errors"] += s.value if failed else 0.0
            elif (s.name == "shopserve_request_duration_seconds_bucket"
                  and is_traffic(labels.get("endpoint", ""))):
                le = float(labels["le"])
                t.buckets[le] = t.buckets.get(le, 0.0) + s.value
            elif s.name == "shopserve_cache_total" and labels.get("layer") == "memory":
                t.cache_lookups += s.value
                t.cache_hits += s.value if labels.get("result") == "hit" else 0.0
    return t


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """``histogram_quantile`` over cumulative bucket counts (linear within a bucket)."""
    edges = sorted(buckets)
    if not edges or buckets[edges[-1]] <= 0:
        return None
    rank = q * buckets[edges[-1]]
    prev_le, prev_count = 0.0, 0.0
    for le in edges:
        count = buckets[le]
        if count >= rank:
            if le == float("inf"):
                return prev_le
            width = count - prev_count
            return prev_le + (le - prev_le) * ((rank - prev_count) / width if width else 1.0)
        prev_le, prev_count = le, count
    return prev_le


def point(now: Totals, before: Totals, seconds: float) -> dict[str, float | None]:
    """One history point from two totals ``seconds`` apart."""
    requests = max(now.requests - before.requests, 0.0)
    delta = {le: now.buckets.get(le, 0.0) - before.buckets.get(le, 0.0) for le in now.buckets}
    lookups = now.cache_lookups - before.cache_lookups
    p50, p99 = quantile(0.5, delta), quantile(0.99, delta)
    return {"rps": round(requests / seconds, 3) if seconds > 0 else 0.0,
            "error_rate": round((now.errors - before.errors) / requests, 6) if requests else 0.0,
            "p50_ms": None if p50 is None else round(p50 * 1000, 3),
            "p99_ms": None if p99 is None else round(p99 * 1000, 3),
            "cache_hit_ratio": round((now.cache_hits - before.cache_hits) / lookups, 6)
            if lookups > 0 else None}


class History:
    """Two bounded rings (fine and coarse), so hours of history stay small."""

    def __init__(self) -> None:
        self.fine: deque[dict[str, Any]] = deque(maxlen=FINE_POINTS)
        self.coarse: deque[dict[str, Any]] = deque(maxlen=COARSE_POINTS)
        self._pending: list[dict[str, Any]] = []

    def add(self, t: float, values: dict[str, float | None]) -> None:
        item = {"t": round(t, 3), **values}
        self.fine.append(item)
        self._pending.append(item)
        if len(self._pending) >= COARSE_EVERY:
            self.coarse.append(_merge(self._pending))
            self._pending = []


def _merge(items: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"t": items[-1]["t"]}
    for key in SERIES:
        values = [i[key] for i in items if i[key] is not None]
        # p99 of a minute: the worst interval's (an upper bound); the others: mean
        out[key] = (max(values) if key == "p99_ms" else round(sum(values) / len(values), 6)) \
            if values else None
    return out


def replica_view(sup: Any) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
    """Replicas (slot, zone, pid, state, alive) and per-zone desired/up/ready counts."""
    zones: dict[str, dict[str, int]] = {}
    for slot in range(sup.spec.replicas):
        zone = sup.spec.zones[slot % len(sup.spec.zones)]
        zones.setdefault(zone, {"desired": 0, "up": 0, "ready": 0})["desired"] += 1
    replicas = []
    for r in sorted(sup.replicas.values(), key=lambda r: r.slot):
        alive = r.process.poll() is None
        ready = alive and r.state.value == "ready" and r.failures == 0
        z = zones.setdefault(r.zone, {"desired": 0, "up": 0, "ready": 0})
        z["up"] += int(alive)
        z["ready"] += int(ready)
        replicas.append({"slot": r.slot, "zone": r.zone, "pid": r.process.pid,
                         "state": r.state.value if alive else "exited", "alive": alive,
                         "healthy": ready, "failures": r.failures})
    return replicas, zones


def history_path(run_dir: Path) -> Path:
    return run_dir / "monitor" / "history.json"


async def record_history(sup: Any, interval_s: float = 2.0) -> None:
    """Run in the supervisor until cancelled: sample, set replica gauges, write the file."""
    path = history_path(sup.run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    history, started = History(), time.time()
    before, at = read_totals(), time.monotonic()
    loop = asyncio.get_running_loop()
    while not sup.stopping:
        await asyncio.sleep(interval_s)
        try:
            now, now_at = await loop.run_in_executor(None, read_totals), time.monotonic()
            history.add(time.time(), point(now, before, now_at - at))
            before, at = now, now_at
            replicas, zones = replica_view(sup)
            for zone, c in zones.items():
                metrics.REPLICAS_DESIRED.labels(zone).set(c["desired"])
                metrics.REPLICAS_UP.labels(zone).set(c["up"])
                metrics.REPLICAS_READY.labels(zone).set(c["ready"])
            data = {"started": started, "interval_s": interval_s, "replicas": replicas,
                    "zones": zones, "fine": list(history.fine), "coarse": list(history.coarse),
                    "requests_total": now.requests, "errors_total": now.errors,
                    "by_version": now.by_version}
            await loop.run_in_executor(None, _write, path, orjson.dumps(data))
        except Exception:
            log.exception("history round failed")


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
