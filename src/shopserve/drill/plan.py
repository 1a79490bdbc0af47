"""``drill plan``: what a drill will do, to what, for how long, and how each step is undone."""

from __future__ import annotations

from shopserve.drill.faults import build_fault
from shopserve.drill.spec import DrillSpec, FileSource


def describe_activity(kind: str, name: str, provider: object) -> str:
    p = provider
    where = getattr(p, "url", None) or f"{getattr(p, 'module', '')}.{getattr(p, 'func', '')}" \
        if getattr(p, "type", "") != "process" else getattr(p, "path", "")
    return f"{kind} {name!r} ({getattr(p, 'type', '?')}: {where})"


def plan_lines(drill: DrillSpec, target: str) -> list[str]:
    ext = drill.shopserve
    load = ext.load
    source = f"file {load.source.file}" if isinstance(load.source, FileSource) \
        else f"the {load.source.demo} demo shop (seed {load.source.seed})"
    mix = ", ".join(f"{m.route.value}×{m.weight:g}" + (f" ({m.rows} candidates)" if m.rows > 1
                                                         else "") for m in load.mix)
    lines = [f"drill: {drill.title}", f"target: {target}", "",
             "1. steady state before:"]
    hyp = drill.steady_state_hypothesis
    lines += [f"   - {describe_activity('probe', p.name, p.provider)}, tolerance "
              f"{p.tolerance!r}" for p in (hyp.probes if hyp else [])] or ["   - (none)"]
    lines += ["", f"2. load: {load.rate:g} requests/s for {load.duration_s:g} s ({mix}) from "
              f"{source}; client retries {load.client.retries}, attempt timeout "
              f"{load.client.attempt_timeout_s:g} s"]
    for activity in drill.method:
        what = describe_activity(activity.type, activity.name, activity.provider)
        lines.append(f"   method at 0 s: {what}")
    for spec in ext.faults:
        fault = build_fault(spec)
        lines.append(f"   fault at {spec.start_s:g} s for {spec.duration_s:g} s: "
                     f"{fault.describe()}")
        lines.append(f"      undone by: {fault.how_undone()} (also on abort and Ctrl-C)")
    stop = ext.stop
    lines += [f"   stop when more than {stop.max_error_rate:.0%} of requests are lost for "
              f"{stop.consecutive} checks in a row ({ext.slo.check_interval_s:g} s each)", "",
              "3. steady state after: the same probes", "",
              "4. rollbacks (always run):"]
    lines += [f"   - {describe_activity(a.type, a.name, a.provider)}" for a in drill.rollbacks] \
        or ["   - (none besides undoing each fault)"]
    slo = ext.slo
    goals = [f"availability ≥ {slo.availability}"]
    for label, value in (("p99 ≤ ms", slo.p99_ms), ("p99 ≤ × baseline", slo.p99_factor),
                         ("fallback ratio ≤", slo.fallback_ratio), ("RTO ≤ s", slo.max_rto_s),
                         ("lost ≤", slo.max_lost), ("errors ≤", slo.max_errors),
                         ("back to normal ≤ s", slo.max_recovery_s)):
        if value is not None:
            goals.append(f"{label} {value:g}")
    lines += ["", "SLOs: " + "; ".join(goals), "verdict: exit 0 passed, 3 deviated, "
              "4 rollback failed"]
    return lines
