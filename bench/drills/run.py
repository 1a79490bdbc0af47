"""Run the shipped drills with their own (realistic) durations and report against the goals.

    python bench/drills/run.py [--drills replica-crash,zone-loss] [--out bench/results/drills]

Starts its own deployment (demo-shop CTR model, 2 replicas in 2 zones, canary on ``ctr@canary``,
a real redis-server on a free port), all on 127.0.0.1, and stops everything after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from shopserve.data import DemoShopSpec, generate_demo_shop
from shopserve.drill import DrillRunner, load_drill
from shopserve.drill.catalogue import drills_dir
from shopserve.drill.deployment import OwnedDeployment
from shopserve.drill.journal import write_journal
from shopserve.models.ctr import train_ctr
from shopserve.registry import Registry
from shopserve.testing import free_port

GOAL_DRILLS = ["replica-crash", "redis-outage", "bad-canary", "corrupt-artifact", "overload",
               "zone-loss"]


def _check(ext: dict[str, Any], name: str) -> Any:
    return next((c["observed"] for c in ext["checks"] if c["name"] == name), None)


def goals(name: str, ext: dict[str, Any]) -> list[tuple[str, Any, bool]]:
    """(goal, observed, met) for the issue's goals of drill ``name``."""
    wins, fault = ext["windows"], (ext["faults"] or [{}])[0]
    base_p99, fault_p99 = wins["baseline"]["p99_ms"], wins.get("fault", {}).get("p99_ms")
    lost, errors = ext["requests_lost"], ext["overall"]["lost"] + ext["overall"]["failed_attempts"]
    rto = fault.get("rto_s")
    if name == "replica-crash":
        return [("0 requests lost", lost, lost == 0),
                ("RTO ≤ 1 s", rto, rto is not None and rto <= 1.0),
                ("p99 during fault ≤ 2× baseline", f"{fault_p99} vs {base_p99} ms",
                 None not in (fault_p99, base_p99) and fault_p99 <= 2 * base_p99)]
    if name == "redis-outage":
        return [("0 errors (lost + failed attempts)", errors, errors == 0)]
    if name == "bad-canary":
        after = _check(ext, "bad canary rolled back automatically")
        share = _check(ext, "share of answers from the bad canary")
        return [("rolled back automatically ≤ 10 s", after, after is not None and after <= 10),
                ("≤ 1% of requests answered by it", share, share is not None and share <= 0.01)]
    if name == "corrupt-artifact":
        refused = _check(ext, "deploy of the corrupted version refused")
        seen = _check(ext, "the old version keeps serving")
        return [("deploy refused", refused, fault.get("detail", {}).get("deploy_refused") is True),
                ("old version keeps serving", seen, seen is not None and len(seen) == 1),
                ("0 errors", errors, errors == 0)]
    if name == "overload":
        d = fault.get("detail", {})
        rejected = wins.get("fault", {}).get("rejected_p99_ms")
        refused = wins.get("fault", {}).get("rejected", 0)
        recovery, times = ext["recovery_s"], d.get("offered_x_capacity")
        return [("offered 5× capacity", f"{d.get('offered_rps')} req/s = {times}× "
                 f"{d.get('capacity_rps')} req/s", times is not None and times >= 4.5),
                ("admitted p99 within 2× baseline", f"{fault_p99} vs {base_p99} ms",
                 None not in (fault_p99, base_p99) and fault_p99 <= 2 * base_p99),
                ("excess rejected in ≤ 5 ms (p99)",
                 f"{refused} refused, p50 {d.get('spike_refusals', {}).get('p50_ms')} ms, "
                 f"p99 {rejected} ms", bool(refused) and rejected is not None and rejected <= 5),
                ("normal ≤ 2 s after the spike", recovery, recovery is not None and recovery <= 2)]
    if name == "zone-loss":
        return [("0 requests lost", lost, lost == 0),
                ("RTO ≤ 2 s", rto, rto is not None and rto <= 2.0)]
    return [("verdict passed", ext["verdict"], ext["verdict"] == "passed")]


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server is needed for the Redis drills")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc, f"redis://127.0.0.1:{port}/0"


def deployment(home: Path, redis_url: str, max_loop_lag_ms: float | None = 2.0) -> dict[str, Any]:
    reg = Registry.open(home)
    trained = train_ctr(generate_demo_shop(DemoShopSpec.small()), Path(tempfile.mkdtemp()))
    mv = reg.register("ctr", trained.files, trained.kind, signature=trained.signature,
                      config=trained.config, metrics=trained.metrics)
    reg.promote(mv.ref, "production")
    reg.promote(mv.ref, "canary")
    # the overload drill ranks 100 candidates per request: the in-flight limit (8 requests =
    # 800 rows) binds before the row queue (1024), so the excess is refused by admission, as
    # soon as its head is parsed, not by the queue after its body was read and parsed
    return {"models": [{"ref": "ctr@production", "queue_limit": 1024,
                        "canary": {"ref": "ctr@canary", "weight": 0.0,
                                   "guard": {"min_requests": 5, "max_score_shift": 0.25,
                                             "max_mean_latency_ms": 10.0}}}],
            "replicas": 2, "zones": ["a", "b"], "home": str(home),
            "health": {"interval_s": 0.25, "timeout_s": 0.5, "failures": 2},
            "cache": {"redis_url": redis_url},
            "server": {"max_in_flight": 8, "max_loop_lag_ms": max_loop_lag_ms}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drills", default=",".join(GOAL_DRILLS))
    parser.add_argument("--out", type=Path, default=Path("bench/results/drills"))
    parser.add_argument("--max-loop-lag-ms", default="none",
                        help="server.max_loop_lag_ms of the deployment; 'none': a fixed "
                             "in-flight limit (8)")
    args = parser.parse_args()
    lag = None if args.max_loop_lag_ms == "none" else float(args.max_loop_lag_ms)
    args.out.mkdir(parents=True, exist_ok=True)
    redis_proc, redis_url = start_redis()
    owned = OwnedDeployment(deployment(Path(tempfile.mkdtemp(prefix="drill-bench-")), redis_url,
                                  lag))
    rows: list[dict[str, Any]] = []
    try:
        target = owned.start()
        for name in args.drills.split(","):
            started = time.monotonic()
            journal = DrillRunner(load_drill(drills_dir() / f"{name}.yaml"), target).run()
            write_journal(journal, args.out / f"{name}.json")
            ext = journal["extensions"][0]
            rows.append({"drill": name, "verdict": ext["verdict"],
                         "seconds": round(time.monotonic() - started, 1),
                         "goals": [{"goal": g, "observed": o, "met": m}
                                   for g, o, m in goals(name, ext)]})
            print(json.dumps(rows[-1], default=str), flush=True)
    finally:
        owned.stop()
        redis_proc.kill()
        redis_proc.wait()
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(),
               "load_avg_1m": round(os.getloadavg()[0], 2), "python": platform.python_version()}
    (args.out / "summary.json").write_text(json.dumps({"machine": machine, "drills": rows},
                                                      indent=2, default=str), encoding="utf-8")
    print(json.dumps(machine))


if __name__ == "__main__":
    main()
