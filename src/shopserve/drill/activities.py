"""Chaos Toolkit activities (probes and actions: http, python, process) and their tolerances.

Each run gives a Chaos Toolkit run record: activity, output, status, start, end, duration.
"""

from __future__ import annotations

import importlib
import shlex
import subprocess
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from shopserve.drill.spec import (
    ActivitySpec,
    HttpProvider,
    HypothesisSpec,
    PythonProvider,
    RangeTolerance,
    Tolerance,
)


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def run_activity(activity: ActivitySpec, base_url: str, env: dict[str, Any]) -> dict[str, Any]:
    """Run one activity; its failure is recorded (status ``failed``), never raised."""
    start, t = now_iso(), time.monotonic()
    record: dict[str, Any] = {"activity": activity.model_dump(mode="json", by_alias=True),
                              "start": start}
    try:
        record["output"] = _call(activity, base_url, env)
        record["status"] = "succeeded"
    except Exception as exc:  # any failure of a user's activity is part of the journal
        record.update(status="failed", output=None, exception=[f"{type(exc).__name__}: {exc}"])
    for key, pause in activity.pauses.items():
        if key == "after":
            time.sleep(pause)
    record.update(end=now_iso(), duration=round(time.monotonic() - t, 4))
    return record


def _call(activity: ActivitySpec, base_url: str, env: dict[str, Any]) -> Any:
    p = activity.provider
    if isinstance(p, HttpProvider):
        url = p.url if "://" in p.url else base_url + p.url
        r = httpx.request(p.method, url, headers=p.headers, json=p.arguments, timeout=p.timeout)
        try:
            body: Any = r.json()
        except ValueError:
            body = r.text
        return {"status": r.status_code, "headers": dict(r.headers), "body": body}
    if isinstance(p, PythonProvider):
        func = getattr(importlib.import_module(p.module), p.func)
        args = dict(p.arguments)
        if "url" in func.__code__.co_varnames and "url" not in args:
            args["url"] = base_url
        for key in ("admin_token", "home"):
            if key in func.__code__.co_varnames and key not in args and env.get(key) is not None:
                args[key] = env[key]
        return func(**args)
    argv = [p.path, *(shlex.split(p.arguments) if isinstance(p.arguments, str) else p.arguments)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=p.timeout, check=False)
    return {"status": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def within(tolerance: Tolerance | None, output: Any) -> bool:
    """Chaos Toolkit's tolerance rules for the outputs shopserve's probes give."""
    if tolerance is None:
        return True
    value = output.get("status") if isinstance(output, dict) and "status" in output else output
    if isinstance(tolerance, RangeTolerance):
        if tolerance.target and isinstance(output, dict):
            value = output.get(tolerance.target)
        return isinstance(value, int | float) and tolerance.range[0] <= value <= tolerance.range[1]
    if isinstance(tolerance, bool):
        return value is tolerance or (isinstance(value, bool) and value == tolerance)
    if isinstance(tolerance, list):
        return value in tolerance
    return bool(value == tolerance)


def run_hypothesis(spec: HypothesisSpec | None, base_url: str,
                   env: dict[str, Any]) -> dict[str, Any] | None:
    """The steady-state record of Chaos Toolkit's journal: probes and ``steady_state_met``."""
    if spec is None:
        return None
    probes = []
    met = True
    for probe in spec.probes:
        record = run_activity(probe, base_url, env)
        record["tolerance_met"] = record["status"] == "succeeded" and within(
            probe.tolerance, record["output"])
        probes.append(record)
        if not record["tolerance_met"]:
            met = False
            break  # as Chaos Toolkit does: the first failed probe decides
    return {"steady_state_met": met, "probes": probes}
