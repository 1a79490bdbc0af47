"""Chaos Toolkit actions and probes for shopserve, for ``chaos run`` experiments::

    provider: {type: python, module: shopserve.drill.chaostoolkit, func: kill_replica,
               arguments: {url: "http://127.0.0.1:8000", admin_token: "..."}}

Plain functions with JSON-friendly arguments and results, as Chaos Toolkit calls them.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import httpx
import psutil

from shopserve.drill.results import Verdict
from shopserve.drill.spec import SelectMode, TargetSpec
from shopserve.drill.target import DrillTarget, select_replicas
from shopserve.errors import UsageError

__all__ = ["hang_replica", "journal_verdict", "kill_replica", "probe_availability",
           "probe_p99_ms", "resume_replicas", "set_canary_weight"]


def _target(url: str, admin_token: str | None) -> DrillTarget:
    return DrillTarget(url=url, admin_token=admin_token or os.environ.get("SHOPSERVE_ADMIN_TOKEN"))


def _signal(url: str, admin_token: str | None, sig: signal.Signals, select: str,
            count: int | None, zone: str | None) -> list[int]:
    target = _target(url, admin_token)
    supervisor = target.supervisor_pid()
    chosen = select_replicas(target.replicas(), TargetSpec(select=SelectMode(select),
                                                           count=count, zone=zone))
    pids = []
    for replica in chosen:
        proc = target.check_owned(replica.pid, supervisor)
        proc.send_signal(sig)
        pids.append(proc.pid)
    return pids


def kill_replica(url: str, admin_token: str | None = None, select: str = "one",
                 count: int | None = None, zone: str | None = None) -> list[int]:
    """SIGKILL the selected replicas of the deployment at ``url``; the pids killed."""
    return _signal(url, admin_token, signal.SIGKILL, select, count, zone)


def hang_replica(url: str, admin_token: str | None = None, select: str = "one",
                 count: int | None = None, zone: str | None = None) -> list[int]:
    """SIGSTOP the selected replicas; undo with ``resume_replicas`` in the rollbacks."""
    return _signal(url, admin_token, signal.SIGSTOP, select, count, zone)


def resume_replicas(url: str, admin_token: str | None = None) -> list[int]:
    """SIGCONT every stopped replica of the deployment (a rollback for ``hang_replica``)."""
    target = _target(url, admin_token)
    supervisor = target.supervisor_pid()
    resumed = []
    for child in psutil.Process(supervisor).children():
        if child.status() == psutil.STATUS_STOPPED:
            child.send_signal(signal.SIGCONT)
            resumed.append(child.pid)
    return resumed


def set_canary_weight(url: str, model: str, weight: float,
                      admin_token: str | None = None) -> dict[str, Any]:
    """Set a model's canary weight through the admin API; the new control state."""
    r = _target(url, admin_token).admin("canary", {"model": model, "weight": weight})
    if r.status_code != 200:
        raise UsageError(f"canary weight refused: {r.status_code} {r.text[:200]}")
    data: dict[str, Any] = r.json()
    return data


def _sample(url: str, seconds: float, rate: float, body: dict[str, Any] | None,
            path: str) -> tuple[int, list[float]]:
    """Send ``rate`` requests/s for ``seconds``; (failures, latencies of the answered ones)."""
    payload = body or _demo_rank_body()
    failures, latencies = 0, []
    with httpx.Client(base_url=url.rstrip("/"), timeout=2.0) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.monotonic()
            try:
                ok = client.post(path, json=payload).status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.monotonic() - start)
            else:
                failures += 1
            time.sleep(max(1.0 / rate - (time.monotonic() - start), 0))
    return failures, latencies


def _demo_rank_body() -> dict[str, Any]:
    """One ranking request made from the small demo shop's first click row."""
    from shopserve.data import DemoShopSpec, generate_demo_shop

    row = generate_demo_shop(DemoShopSpec.small()).clicks.drop_columns(["label"]).slice(0, 1)
    return {"candidates": row.to_pylist()}


def probe_availability(url: str, seconds: float = 1.0, rate: float = 20.0,
                       min_availability: float | None = None,
                       body: dict[str, Any] | None = None, path: str = "/v1/rank") -> Any:
    """Share of requests answered over ``seconds``; with ``min_availability``, whether it holds."""
    failures, latencies = _sample(url, seconds, rate, body, path)
    total = failures + len(latencies)
    share = len(latencies) / total if total else 0.0
    return share if min_availability is None else share >= min_availability


def probe_p99_ms(url: str, seconds: float = 1.0, rate: float = 20.0,
                 body: dict[str, Any] | None = None, path: str = "/v1/rank") -> float | None:
    """p99 latency in ms of the requests answered over ``seconds`` (None: none answered)."""
    _, latencies = _sample(url, seconds, rate, body, path)
    if not latencies:
        return None
    ordered = sorted(latencies)
    return round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3)


def journal_verdict(journal: dict[str, Any]) -> Verdict:
    """The verdict of a ``chaos run`` journal. Chaos Toolkit ends ``completed`` (exit 0) in cases
    where a steady-state probe was out of tolerance, so read every part, not its status alone."""
    rollbacks = journal.get("rollbacks") or []
    if any(r.get("status") != "succeeded" for r in rollbacks):
        return Verdict.ROLLBACK_FAILED
    states = journal.get("steady_states") or {}
    met = all(s.get("steady_state_met", False) for s in (states.get("before"),
                                                          states.get("after")) if s is not None)
    failed_actions = any(r.get("status") != "succeeded" for r in journal.get("run") or [])
    if journal.get("deviated") or journal.get("status") != "completed" or not met \
            or failed_actions:
        return Verdict.DEVIATED
    return Verdict.PASSED
