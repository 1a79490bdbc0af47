"""The journal: Chaos Toolkit's keys (experiment, status, deviated, steady_states, run,
rollbacks, start, end, duration) plus shopserve's measurements and verdict under ``extensions``.
"""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shopserve.drill import measures
from shopserve.drill.faults.base import Fault, FaultContext, FaultState
from shopserve.drill.results import Check, DrillStatus, Verdict
from shopserve.errors import SpecError

if TYPE_CHECKING:
    from shopserve.drill.runner import DrillRunner


def build_journal(runner: DrillRunner, ctx: FaultContext, started: str, duration: float,
                  steady: dict[str, Any], rollbacks: list[dict[str, Any]]) -> dict[str, Any]:
    ext = runner.ext
    injected = [f for f in runner.faults if f.injected_at is not None]
    window = None
    if injected:
        window = (min(f.injected_at or 0.0 for f in injected),
                  max(f.undone_at if f.undone_at is not None else ext.load.duration_s
                      for f in injected))
    wins = measures.windows(runner.samples, ext.load.duration_s, window)
    p99_limit = _p99_limit(runner, wins)
    faults = [_fault_record(f, runner, ctx, p99_limit) for f in runner.faults]
    overall = measures.summarize(runner.samples, ext.load.duration_s)
    recovery = None
    if window is not None:
        recovery = measures.time_to_hold(runner.samples, window[1], ext.load.duration_s,
                                         ext.slo, p99_limit)
    checks = _checks(runner, ctx, steady, wins, overall, faults, recovery, p99_limit)
    rollback_failed = any(r["status"] != "succeeded" for r in rollbacks) or any(
        f.state is FaultState.UNDO_FAILED for f in runner.faults)
    deviated = not all(c.ok for c in checks)
    verdict = (Verdict.ROLLBACK_FAILED if rollback_failed
               else Verdict.DEVIATED if deviated else Verdict.PASSED)
    status = runner.status
    if status is DrillStatus.COMPLETED and deviated:
        status = DrillStatus.FAILED  # as Chaos Toolkit marks a deviated run
    return {
        "chaoslib-version": None, "platform": platform.platform(), "node": platform.node(),
        "experiment": runner.drill.model_dump(mode="json", by_alias=True, exclude_none=True),
        "start": started, "status": status.value, "deviated": deviated,
        "steady_states": steady, "run": runner.run_records, "rollbacks": rollbacks,
        "end": datetime.now(UTC).isoformat(), "duration": round(duration, 3),
        "extensions": [{
            "name": "shopserve", "target": runner.target.url, "verdict": verdict.name.lower(),
            "exit_code": int(verdict), "abort_reason": runner.abort_reason,
            "checks": [c.as_dict() for c in checks], "windows": wins, "overall": overall,
            "faults": faults, "recovery_s": recovery,
            "requests_lost": overall["lost"], "requests_degraded": overall["degraded"],
            "requests_fresh": overall["fresh"], "requests_rejected": overall["rejected"],
            "error_budget_burned": measures.budget_burned(
                overall["lost"], overall["requests"], ext.slo.availability),
            "p99_limit_ms": None if p99_limit is None else round(p99_limit * 1000, 3),
            "timeline": measures.timeline(runner.samples, ext.load.duration_s),
            "load": ext.load.model_dump(mode="json"), "slo": ext.slo.model_dump(mode="json"),
        }],
    }


def _p99_limit(runner: DrillRunner, wins: dict[str, dict[str, Any]]) -> float | None:
    slo = runner.ext.slo
    limits = []
    if slo.p99_ms is not None:
        limits.append(slo.p99_ms / 1000)
    base = wins["baseline"].get("p99_ms")
    if slo.p99_factor is not None and base is not None:
        limits.append(slo.p99_factor * base / 1000)
    return min(limits) if limits else None


def _fault_record(fault: Fault, runner: DrillRunner, ctx: FaultContext,
                  p99_limit: float | None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "type": fault.name, "what": fault.describe(), "undo": fault.how_undone(),
        "state": fault.state.value, "error": fault.error, "injected_at": fault.injected_at,
        "undone_at": fault.undone_at, "start_s": fault.spec.start_s,
        "duration_s": fault.spec.duration_s,
        "detail": {k: v for k, v in fault.detail.items()
                   if not k.startswith("_") and k not in ("restore", "created")},
    }
    if fault.injected_at is not None:
        t = fault.injected_at
        horizon = (fault.undone_at or runner.ext.load.duration_s) + 2.0
        record.update(
            time_to_detect_s=_detected(ctx, t),
            time_to_failover_s=measures.time_to_failover(runner.samples, t, horizon),
            rto_s=measures.time_to_hold(runner.samples, t, runner.ext.load.duration_s,
                                        runner.ext.slo, p99_limit))
    return record


def _detected(ctx: FaultContext, t: float) -> float | None:
    """Seconds until the service showed it noticed: replicas or control state changed."""
    def key(status: dict[str, Any]) -> tuple[Any, ...]:
        return (sorted(r["pid"] for r in status.get("replicas", [])),
                len(status.get("state", {}).get("events", [])),
                sorted(status.get("state", {}).get("canary_weights", {}).items()))

    earlier = [s for when, s in ctx.status_log.snapshots if when <= t]
    if not earlier:
        return None
    before = key(earlier[-1])
    for when, status in ctx.status_log.snapshots:
        if when > t and key(status) != before:
            return round(when - t, 3)
    return None


def _checks(runner: DrillRunner, ctx: FaultContext, steady: dict[str, Any],
            wins: dict[str, dict[str, Any]], overall: dict[str, Any],
            faults: list[dict[str, Any]], recovery: float | None,
            p99_limit: float | None) -> list[Check]:
    slo = runner.ext.slo
    checks = []
    for when in ("before", "after"):
        state = steady.get(when)
        before_failed = when == "after" and steady.get("before") is not None \
            and not steady["before"]["steady_state_met"]
        if runner.drill.steady_state_hypothesis is not None and not before_failed:
            met = state is not None and state["steady_state_met"]
            checks.append(Check(f"steady state {when}", met, met, "every probe within tolerance"))
    checks.append(Check("not aborted or interrupted", runner.status is DrillStatus.COMPLETED,
                        runner.abort_reason or runner.status.value, "ran to the end"))
    avail = overall["availability"]
    checks.append(Check("availability", avail is not None and avail >= slo.availability, avail,
                        f"≥ {slo.availability}"))
    if slo.max_lost is not None:
        checks.append(Check("requests lost", overall["lost"] <= slo.max_lost, overall["lost"],
                            f"≤ {slo.max_lost}"))
    if slo.max_errors is not None:
        errors = overall["lost"] + overall["failed_attempts"]
        checks.append(Check("errors (lost + failed attempts)", errors <= slo.max_errors, errors,
                            f"≤ {slo.max_errors}"))
    bad = overall["nonfinite_scores"]
    checks.append(Check("answers with a NaN or missing score", bad <= slo.max_nonfinite_scores,
                        bad, f"≤ {slo.max_nonfinite_scores}"))
    fault_p99 = wins.get("fault", wins["baseline"])["p99_ms"]
    if p99_limit is not None:
        ok = fault_p99 is None or fault_p99 <= p99_limit * 1000
        checks.append(Check("p99 during the fault", ok, fault_p99,
                            f"≤ {p99_limit * 1000:.1f} ms"))
    if slo.fallback_ratio is not None:
        checks.append(Check("fallback ratio", overall["fallback_ratio"] <= slo.fallback_ratio,
                            overall["fallback_ratio"], f"≤ {slo.fallback_ratio}"))
    if slo.max_rto_s is not None:
        rtos: list[float | None] = [f.get("rto_s") for f in faults if "rto_s" in f]
        worst = None if None in rtos else max((r for r in rtos if r is not None), default=0.0)
        checks.append(Check("RTO", worst is not None and worst <= slo.max_rto_s, worst,
                            f"≤ {slo.max_rto_s} s"))
    if slo.max_recovery_s is not None:
        checks.append(Check("back to normal after the faults", recovery is not None
                            and recovery <= slo.max_recovery_s, recovery,
                            f"≤ {slo.max_recovery_s} s"))
    for fault in runner.faults:
        checks.append(Check(f"{fault.name} injected and undone", fault.state is FaultState.UNDONE,
                            fault.error or fault.state.value, "undone"))
        checks.extend(fault.checks(ctx, wins))
    return checks


def write_journal(journal: dict[str, Any], path: Path) -> Path:
    """Write atomically, so a reader never sees half a journal."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(journal, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)
    return path


def read_journal(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SpecError(f"{path}: no such journal") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: not a JSON journal: {exc}") from exc
    if not isinstance(data, dict) or "experiment" not in data:
        raise SpecError(f"{path}: not a drill journal (no 'experiment')")
    return data
