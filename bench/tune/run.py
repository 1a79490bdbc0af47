"""The issue-12 goals in one bounded run (a few minutes), on the small demo shop's CTR model:

1. `tune` recommends a configuration; served as written (cache off, so every request runs the
   model) and driven open-loop at the target rate per machine, it meets the p99 target; and no
   configuration it tried reaches the target with fewer machines, or as many with fewer replicas.
2. The cache simulation's predicted hit ratio is within 2 percentage points of the hit ratio a
   running service shows when the same log is replayed against it in real time.

    python bench/tune/run.py [--target-rps 150 --p99-ms 50 --budget 90]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import yaml

from shopserve.data import DemoShopSpec, generate_demo_shop
from shopserve.loadgen import LoadMode, load_spec, run_load
from shopserve.models import train_and_register
from shopserve.registry import Registry
from shopserve.testing import ShopserveProcess
from shopserve.tune import (
    CachePlanSpec,
    MeasureSettings,
    TuneSpec,
    demo_log,
    iter_requests,
    save_result,
    simulate,
    tune,
    write_outputs,
)
from shopserve.tune.search import cost
from shopserve.types import ModelKind


def check_recommendation(home: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    settings = MeasureSettings(target_rps=args.target_rps, p99_ms=args.p99_ms, home=home,
                               step_s=args.step_seconds)
    result = tune(TuneSpec(ref="ctr@production", measure=settings, budget_s=args.budget))
    save_result(result, home)
    write_outputs(result, work / "tuned", home)
    plan = result.plan
    cheaper = [t.candidate.label() for t in result.trials
               if cost(t, settings)[:2] < cost(plan.trial, settings)[:2]]
    spec = yaml.safe_load((work / "tuned" / "deployment.yaml").read_text())
    spec["cache"] = {"size": 0}
    spec["models"][0]["cache"] = False
    rate = args.target_rps / plan.machines  # what each machine gets at the target
    table = pq.read_table(Registry.open(home).load("ctr@1").files["eval.parquet"])
    rows = table.drop_columns(["label"]).to_pylist()
    bodies = tuple(orjson.dumps({"candidates": rows[i:i + 10]}) for i in range(0, 400, 10))
    with ShopserveProcess.from_spec(spec, work) as server:
        run_load(load_spec(url=server.url, path="/v1/rank", bodies=bodies, duration_s=1.0))
        report = run_load(load_spec(url=server.url, path="/v1/rank", bodies=bodies,
                                    mode=LoadMode.OPEN, rate=rate, connections=128,
                                    duration_s=args.check_seconds))
    return {"chosen": plan.trial.candidate.label(), "machines": plan.machines,
            "headroom_at_target": plan.headroom_at_target, "tried": len(result.trials),
            "tune_seconds": result.elapsed_s, "rate_per_machine": rate,
            "observed": report.to_dict(),
            "p99_met": report.p99_ms <= args.p99_ms and report.error_count == 0,
            "cheaper_tried": cheaper}


def check_cache(home: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    log_path = work / "queries.parquet"
    pq.write_table(demo_log(args.log_requests, args.log_rate, seed=3), log_path)
    plan = simulate(iter_requests(log_path, "query", "timestamp"),
                    CachePlanSpec(sizes=(args.cache_size,), ttls_s=(args.cache_ttl,)))
    predicted = plan.cell(args.cache_size, args.cache_ttl).hit_ratio
    base = pq.read_table(Registry.open(home).load("ctr@1").files["eval.parquet"]) \
        .drop_columns(["label"]).slice(0, 1).to_pylist()[0]
    keys: list[str] = []
    times: list[float] = []
    for k, t in iter_requests(log_path, "query", "timestamp"):
        keys += k
        times += t
    # one distinct rank request per distinct key: the key rides in a categorical feature
    bodies = tuple(orjson.dumps({"candidates": [{**base, "C1": k}]}) for k in keys)
    offsets = tuple(t - times[0] for t in times)
    spec = {"home": str(home), "replicas": 1, "models": [{"ref": "ctr@production"}],
            "cache": {"size": args.cache_size, "ttl_s": args.cache_ttl}}
    with ShopserveProcess.from_spec(spec, work) as server:
        report = run_load(load_spec(url=server.url, path="/v1/rank", bodies=bodies,
                                    mode=LoadMode.OPEN, offsets_s=offsets, connections=128,
                                    match=b'"cached":true'))
    observed = report.matched / max(report.ok, 1)
    return {"requests": len(keys), "distinct": plan.distinct_keys, "size": args.cache_size,
            "ttl_s": args.cache_ttl, "predicted": round(predicted, 4),
            "observed": round(observed, 4), "errors": report.errors,
            "gap_pp": round(abs(predicted - observed) * 100, 2),
            "within_2pp": abs(predicted - observed) <= 0.02 and report.error_count == 0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-rps", type=float, default=150.0)
    parser.add_argument("--p99-ms", type=float, default=50.0)
    parser.add_argument("--budget", type=float, default=90.0)
    parser.add_argument("--step-seconds", type=float, default=1.0)
    parser.add_argument("--check-seconds", type=float, default=5.0)
    parser.add_argument("--log-requests", type=int, default=6000)
    parser.add_argument("--log-rate", type=float, default=200.0)
    parser.add_argument("--cache-size", type=int, default=300)
    parser.add_argument("--cache-ttl", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shopserve-bench-tune-") as tmp:
        home, work = Path(tmp) / "home", Path(tmp)
        registry = Registry.open(home)
        version = train_and_register(ModelKind.RANK, generate_demo_shop(DemoShopSpec.small()),
                                     registry, "ctr")
        registry.promote(version.ref, "production")
        out = {"recommendation": check_recommendation(home, work, args),
               "cache": check_cache(home, work, args)}
    print(json.dumps(out, indent=2))
    ok = out["recommendation"]["p99_met"] and not out["recommendation"]["cheaper_tried"] \
        and out["cache"]["within_2pp"]
    print("goals met" if ok else "goals NOT met", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
