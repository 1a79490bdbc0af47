"""Ray backend against the embedded backend on this machine, and one Ray node against two.

Trains a small CTR model into a temporary registry, serves one deployment file with
``shopserve serve`` (embedded, 2 replicas), then with ``--backend ray`` on a one-node and a
two-node Ray cluster started with ``ray start`` on this machine (1 CPU each, so the "two nodes"
share this machine's cores: a simulation of scale-out, not a measurement of it). Each run is
closed-loop load (shopserve.loadgen) on /v1/rank with one-row bodies, cache off. Bounded: about
three minutes. Usage (as root): python bench/ray/run.py [--seconds 6] [--out results.json]

Everything runs inside a network namespace the script makes (only ``lo`` up), so the two Ray
nodes keep to loopback; the one-node cluster is loopback-only by itself as well.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "ray"))

from cluster import LocalRayCluster
from netns import NetworkNamespace, unavailable_reason

from shopserve.loadgen import load_spec, run_load
from shopserve.models import CtrTrainSpec, train_ctr_table
from shopserve.registry import Registry
from shopserve.testing import ShopserveProcess, free_port

ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
       "SHOPSERVE_RAY_REPLICA_CPUS": "1"}
INSIDE = "SHOPSERVE_BENCH_NETNS"  # set when this script runs in its namespace


def make_registry(home: Path) -> None:
    rng = np.random.default_rng(0)
    n = 2000
    i1, c1 = rng.normal(size=n), rng.choice(["a", "b", "c"], size=n)
    label = (rng.random(n) < 1 / (1 + np.exp(-(1.5 * i1 + (c1 == "a") - 0.5)))).astype(np.int64)
    table = pa.table({"label": label, "I1": i1, "I2": rng.normal(size=n), "C1": c1})
    trained = train_ctr_table(table, home.parent / "ctr-train", CtrTrainSpec(seed=0))
    Registry.open(home).register("ctr", trained.files, trained.kind, signature=trained.signature,
                                 config=trained.config, metrics=trained.metrics)


def measure(url: str, seconds: float) -> dict[str, object]:
    bodies = tuple(orjson.dumps({"candidates": [{"I1": 0.01 * i, "I2": -0.3, "C1": "abc"[i % 3]}]})
                   for i in range(500))
    report = run_load(load_spec(url=url, path="/v1/rank", bodies=bodies, connections=32,
                                duration_s=seconds, warmup_s=1.0, timeout_s=10.0))
    print(f"  {report.summary()}", flush=True)
    return report.to_dict()


def serve(deploy: Path, home: Path, *extra: str) -> ShopserveProcess:
    return ShopserveProcess(["serve", str(deploy), "--port", str(free_port()), *extra],
                            env={**ENV, "SHOPSERVE_HOME": str(home)}, startup_timeout_s=240,
                            log_dir=deploy.parent)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    args = parser.parse_args()
    if INSIDE not in os.environ:
        reason = unavailable_reason()
        if reason:
            print(f"bench/ray runs in its own network namespace: {reason}", file=sys.stderr)
            return 2
        with NetworkNamespace("shopserve-raybench") as ns:
            argv = [*ns.prefix(), sys.executable, str(Path(__file__).resolve()),
                    "--seconds", str(args.seconds), "--out", str(args.out.resolve())]
            return subprocess.run(argv, env={**os.environ, INSIDE: ns.name},
                                  check=False).returncode
    os.environ.update(ENV)
    base = Path(tempfile.mkdtemp(prefix="shopserve-raybench-"))
    home = base / "home"
    make_registry(home)
    results: dict[str, object] = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(),
                                  "seconds": args.seconds}
    for replicas in (1, 2):
        deploy = base / f"deploy-{replicas}.yaml"
        deploy.write_text(yaml.safe_dump({
            "models": [{"ref": "ctr@1", "cache": False,
                        "batching": {"max_batch_size": 32, "max_queue_delay_ms": 1}}],
            "replicas": replicas, "server": {"host": "127.0.0.1", "port": 8000}}))
    print("embedded backend, 2 replicas", flush=True)
    with serve(base / "deploy-2.yaml", home) as server:
        results["embedded_2_replicas"] = measure(server.url, args.seconds)
    cluster = LocalRayCluster(cpus_per_node=1, loopback_only=True)
    try:
        cluster.start_head()
        print("ray backend, 1 node (1 CPU), 1 model replica", flush=True)
        with serve(base / "deploy-1.yaml", home, "--backend", "ray", "--address",
                   cluster.address) as server:
            results["ray_1_node"] = measure(server.url, args.seconds)
    finally:
        cluster.stop()
    cluster = LocalRayCluster(cpus_per_node=1)
    try:
        cluster.start_head()
        cluster.add_node()
        print("ray backend, 2 nodes (1 CPU each, same machine), 2 model replicas", flush=True)
        with serve(base / "deploy-2.yaml", home, "--backend", "ray", "--address",
                   cluster.address) as server:
            results["ray_2_nodes"] = measure(server.url, args.seconds)
    finally:
        cluster.stop()
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
