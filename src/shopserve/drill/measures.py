"""Measurements of a drill from its request samples: windows, timeline, RTO, budget burned."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from shopserve.drill.load import Outcome, Sample
from shopserve.drill.spec import SloSpec


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 3)


def summarize(samples: list[Sample], seconds: float) -> dict[str, Any]:
    """Requests/s, error rate, latency percentiles (answered requests), shares and versions."""
    n = len(samples)
    by = Counter(s.outcome for s in samples)
    answered = [s.latency_s for s in samples if s.outcome in (Outcome.FRESH, Outcome.DEGRADED)]
    rejected = [s.latency_s for s in samples if s.outcome is Outcome.REJECTED]
    ok = by[Outcome.FRESH] + by[Outcome.DEGRADED]
    return {
        "requests": n, "seconds": round(seconds, 3),
        "requests_per_s": round(n / seconds, 2) if seconds > 0 else None,
        "fresh": by[Outcome.FRESH], "degraded": by[Outcome.DEGRADED],
        "rejected": by[Outcome.REJECTED], "lost": by[Outcome.LOST],
        "failed_attempts": sum(s.failed_attempts for s in samples),
        "error_rate": round(by[Outcome.LOST] / n, 5) if n else 0.0,
        "availability": round((n - by[Outcome.LOST]) / n, 5) if n else None,
        "fallback_ratio": round(by[Outcome.DEGRADED] / ok, 5) if ok else 0.0,
        "cache_hit_ratio": round(sum(s.cached for s in samples) / ok, 5) if ok else 0.0,
        "p50_ms": _ms(percentile(answered, 0.50)), "p95_ms": _ms(percentile(answered, 0.95)),
        "p99_ms": _ms(percentile(answered, 0.99)),
        "rejected_p99_ms": _ms(percentile(rejected, 0.99)),
        "nonfinite_scores": sum(s.nonfinite for s in samples),
        "versions": {str(v): c for v, c in sorted(Counter(
            s.version for s in samples if s.version is not None).items())},
        "version_p50_ms": _version_p50(samples),
    }


def _version_p50(samples: list[Sample]) -> dict[str, float | None]:
    by: dict[str, list[float]] = {}
    for s in samples:
        if s.version is not None:
            by.setdefault(str(s.version), []).append(s.latency_s)
    return {v: _ms(percentile(lat, 0.5)) for v, lat in sorted(by.items())}


def windows(samples: list[Sample], duration_s: float,
            fault_window: tuple[float, float] | None) -> dict[str, dict[str, Any]]:
    """Baseline (before the first fault), fault window, recovery (after the last fault)."""
    if fault_window is None:
        return {"baseline": summarize(samples, duration_s)}
    start, end = fault_window
    parts = {"baseline": (0.0, start), "fault": (start, end), "recovery": (end, duration_s)}
    return {name: summarize([s for s in samples if a <= s.t < b], max(b - a, 1e-9))
            for name, (a, b) in parts.items()}


def holds(samples: list[Sample], slo: SloSpec, p99_limit_s: float | None) -> bool:
    """Whether one check interval meets the SLO (no request in it counts as meeting it)."""
    if not samples:
        return True
    lost = sum(s.outcome is Outcome.LOST for s in samples)
    if (len(samples) - lost) / len(samples) < slo.availability:
        return False
    ok = [s for s in samples if s.outcome in (Outcome.FRESH, Outcome.DEGRADED)]
    if p99_limit_s is not None and ok:
        p99 = percentile([s.latency_s for s in ok], 0.99)
        if p99 is not None and p99 > p99_limit_s:
            return False
    if slo.fallback_ratio is not None and ok:
        return sum(s.outcome is Outcome.DEGRADED for s in ok) / len(ok) <= slo.fallback_ratio
    return True


def time_to_hold(samples: list[Sample], since: float, until: float, slo: SloSpec,
                 p99_limit_s: float | None) -> float | None:
    """Seconds from ``since`` until the SLO holds for ``slo.checks`` intervals in a row."""
    step = slo.check_interval_s
    buckets: dict[int, list[Sample]] = {}
    for s in samples:
        if s.t >= since:
            buckets.setdefault(int((s.t - since) / step), []).append(s)
    streak, first = 0, 0
    for i in range(int(max(until - since, 0) / step) + 1):
        if holds(buckets.get(i, []), slo, p99_limit_s):
            if streak == 0:
                first = i
            streak += 1
            if streak >= slo.checks:
                return round(first * step, 3)
        else:
            streak = 0
    return None


def time_to_failover(samples: list[Sample], injected: float, horizon: float) -> float:
    """Seconds from injection until clients saw their last failed attempt (0: none failed)."""
    ends = [s.last_failure_t for s in samples if s.last_failure_t is not None
            and injected <= s.last_failure_t <= horizon]
    return round(max(ends) - injected, 3) if ends else 0.0


def timeline(samples: list[Sample], duration_s: float, buckets: int = 100) -> list[dict[str, Any]]:
    step = max(duration_s / buckets, 0.05)
    count = math.ceil(duration_s / step)
    parts: list[list[Sample]] = [[] for _ in range(count)]
    for s in samples:  # one pass: an overload spike adds tens of thousands of samples
        i = math.floor(s.t / step)
        if 0 <= i < count and i * step <= s.t < (i + 1) * step:
            parts[i].append(s)
    rows: list[dict[str, Any]] = []
    for i, part in enumerate(parts):
        ok = [s.latency_s for s in part if s.outcome in (Outcome.FRESH, Outcome.DEGRADED)]
        rows.append({"t": round(i * step, 3), "rps": round(len(part) / step, 2),
                     "lost": sum(s.outcome is Outcome.LOST for s in part),
                     "rejected": sum(s.outcome is Outcome.REJECTED for s in part),
                     "degraded": sum(s.outcome is Outcome.DEGRADED for s in part),
                     "p99_ms": _ms(percentile(ok, 0.99))})
    return rows


def budget_burned(lost: int, total: int, availability: float) -> float | None:
    """Lost requests as a share of the error budget the availability SLO allows."""
    budget = (1 - availability) * total
    if budget <= 0:
        return None if lost == 0 else math.inf
    return round(lost / budget, 4)
