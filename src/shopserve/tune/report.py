"""What ``shopserve tune`` leaves behind: a deployment file ``shopserve serve`` accepts, and the
measured table as Markdown and JSON.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from shopserve.tune.candidates import Trial
from shopserve.tune.measure import MeasureSettings, deployment
from shopserve.tune.results import TuneResult
from shopserve.tune.search import machines_needed


def deployment_yaml(result: TuneResult, home: Path | None) -> str:
    """The recommended deployment, checked with the serving spec before it is returned."""
    from shopserve.serve.spec import parse_deployment

    c = result.plan.trial.candidate
    data = deployment(result.ref, c, result.machine.device, home, measuring=False)
    parse_deployment(data, source="tuned deployment")
    p = result.plan
    head = [
        f"# shopserve tune {result.ref} (measured {result.model}@{result.version}) on "
        f"{result.machine}",
        f"# target {result.target.rps:g} req/s at p99 ≤ {result.target.p99_ms:g} ms "
        f"({result.target.rows_per_request} rows per request)",
        f"# one machine like this one meets the p99 up to {p.trial.capacity_rps:g} req/s "
        f"(p99 {p.trial.p99_ms_at_capacity} ms); run {p.machines} machine(s) of "
        f"{p.replicas_per_machine} replica(s): {p.headroom_at_target:.0%} headroom at the target",
    ]
    return "\n".join(head) + "\n" + str(yaml.safe_dump(data, sort_keys=False))


def trials_markdown(result: TuneResult) -> str:
    target = MeasureSettings(target_rps=result.target.rps, p99_ms=result.target.p99_ms,
                             headroom=result.target.headroom)
    p = result.plan
    lines = [
        f"# Tune: {result.ref} ({result.model}@{result.version})", "",
        f"Machine: {result.machine}. Target: {result.target.rps:g} req/s at p99 ≤ "
        f"{result.target.p99_ms:g} ms, {result.target.rows_per_request} rows per request, "
        f"{result.target.headroom:.0%} planned headroom. Searched {len(result.trials)} "
        f"configurations in {result.elapsed_s:.0f} s (budget {result.budget_s:.0f} s).", "",
        f"**Chosen: {p.trial.candidate.label()}** — {p.machines} machine(s) × "
        f"{p.replicas_per_machine} replica(s); each machine meets the p99 up to "
        f"{p.trial.capacity_rps:g} req/s, so at the target "
        f"{p.headroom_at_target:.0%} of the fleet's measured capacity is spare.", "",
        "| # | replicas | threads | max batch | queue delay ms | saturation req/s | "
        "meets p99 up to req/s | p99 there ms | machines | |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for n, t in enumerate(result.trials, 1):
        c = t.candidate
        chosen = "**chosen**" if t == p.trial else ""
        machines = str(machines_needed(t, target)) if t.meets else "—"
        lines.append(f"| {n} | {c.replicas} | {c.threads} | {c.max_batch_size} | "
                     f"{c.max_queue_delay_ms:g} | {t.saturation_rps:g} | "
                     f"{t.capacity_rps:g} | {_ms(t)} | {machines} | {chosen} |")
    lines += ["", "Capacity is the highest open-loop rate (latency counted from each request's "
              "scheduled start) with no errors, ≥ 95% answered and p99 within the target; "
              "the load generator ran on the same machine."]
    return "\n".join(lines) + "\n"


def _ms(t: Trial) -> str:
    return f"{t.p99_ms_at_capacity:g}" if t.p99_ms_at_capacity is not None else "—"


def write_outputs(result: TuneResult, out_dir: Path, home: Path | None) -> list[Path]:
    """deployment.yaml, tune.md and tune.json in ``out_dir``; each written whole or not at all."""
    files = {"deployment.yaml": deployment_yaml(result, home),
             "tune.md": trials_markdown(result),
             "tune.json": result.model_dump_json(indent=2) + "\n"}
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = out_dir / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        written.append(path)
    return written
