"""The compact status document behind ``/dashboard`` and ``shopserve monitor status``:
history from the supervisor's file, models and canary weights, drift, feedback, drills.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import orjson

from shopserve.monitor.history import SERIES, history_path
from shopserve.monitor.live import ReplicaMonitor

RANGES = {"5m": ("fine", 300), "1h": ("fine", 3600), "24h": ("coarse", 86400)}
DRILLS_SHOWN = 5


def read_history(run_dir: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = orjson.loads(history_path(run_dir).read_bytes())
        return data
    except (OSError, orjson.JSONDecodeError):
        return {}


def series(points: list[dict[str, Any]], since: float) -> dict[str, list[Any]]:
    """Columns (``t`` and each series) of the points at or after ``since``: compact JSON."""
    kept = [p for p in points if p["t"] >= since]
    return {key: [p.get(key) for p in kept] for key in ("t", *SERIES)}


def latest_drills(home: Path, limit: int = DRILLS_SHOWN) -> list[dict[str, Any]]:
    """The newest drill journals in ``<home>/drills/`` with their verdicts."""
    paths = sorted((home / "drills").glob("*.json"), key=lambda p: p.stat().st_mtime,
                   reverse=True)
    out = []
    for path in paths[:limit]:
        try:
            journal = json.loads(path.read_text(encoding="utf-8"))
            ext: dict[str, Any] = next(
                (e for e in journal.get("extensions", []) if e.get("name") == "shopserve"),
                {})
            out.append({"file": path.name,
                        "title": str(journal.get("experiment", {}).get("title", path.stem)),
                        "verdict": str(ext.get("verdict", journal.get("status", "unknown"))),
                        "status": journal.get("status"), "end": journal.get("end"),
                        "duration_s": journal.get("duration")})
        except (OSError, ValueError, AttributeError):
            out.append({"file": path.name, "title": path.stem, "verdict": "unreadable",
                        "status": None, "end": None, "duration_s": None})
    return out


def models_view(plane: Any, by_version: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    out = []
    for endpoint in plane.endpoints.values():
        def version(runner: Any, role: str, weight: float | None, name: str = endpoint.name) \
                -> dict[str, Any]:
            key = f"{name}@{runner.model.version}"
            return {"version": runner.model.version, "ref": runner.model.ref, "role": role,
                    "weight": weight, **by_version.get(key, {"requests": 0, "errors": 0})}
        versions = [version(endpoint.stable, "stable",
                            1.0 - (endpoint.canary_weight if endpoint.canary else 0.0))]
        if endpoint.canary is not None:
            versions.append(version(endpoint.canary, "canary", endpoint.canary_weight))
        if endpoint.shadow is not None:
            versions.append(version(endpoint.shadow, "shadow", endpoint.shadow_fraction))
        out.append({"name": endpoint.name, "kind": endpoint.kind.value, "versions": versions})
    return out


def build_status(monitor: ReplicaMonitor, range_: str = "5m") -> dict[str, Any]:
    """Everything the dashboard shows, for the last ``range_`` (5m, 1h or 24h)."""
    ring, span = RANGES.get(range_, RANGES["5m"])
    run_dir = monitor.run_dir.parent
    history = read_history(run_dir)
    points: list[dict[str, Any]] = history.get(ring, [])
    fine: list[dict[str, Any]] = history.get("fine", [])
    now = time.time()
    recent = fine[-1] if fine else {}
    state = _events(run_dir)
    snap = monitor.snapshot()
    return {
        "time": round(now, 3), "range": range_ if range_ in RANGES else "5m",
        "interval_s": history.get("interval_s"),
        "uptime_s": round(now - history["started"], 1) if "started" in history else None,
        "now": {key: recent.get(key) for key in SERIES}
        | {"requests_total": history.get("requests_total", 0),
           "errors_total": history.get("errors_total", 0)},
        "history": series(points, now - span),
        "replicas": history.get("replicas", []), "zones": history.get("zones", {}),
        "models": models_view(monitor.plane, history.get("by_version", {})),
        "drift": snap["drift"], "feedback": snap["feedback"],
        "feedback_unjoined": snap["feedback_unjoined"],
        "feedback_events": snap["feedback_events"],
        "drills": latest_drills(monitor.home), "events": state[-10:],
    }


def _events(run_dir: Path) -> list[str]:
    try:
        events = json.loads((run_dir / "state.json").read_text(encoding="utf-8")).get("events")
        return [str(e) for e in events or []]
    except (OSError, ValueError):
        return []
