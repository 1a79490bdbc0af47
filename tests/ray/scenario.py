"""What tests/ray checks on a two-node Ray cluster, run inside the test's network namespace.

Everything that talks to the cluster runs here, in the namespace: the cluster (``ray start``),
``shopserve serve`` on both backends, the HTTP clients, the batch job and the drill. Each step's
observations (or its traceback) go to one JSON file; the tests assert on them.
Usage (inside the namespace): python scenario.py --home HOME --deploy FILE --out RESULT.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import psutil
import pyarrow.parquet as pq
import yaml

sys.path.insert(0, str(Path(__file__).parents[1] / "serve"))  # the serving tests' tiny models

from cluster import LocalRayCluster
from serve_models import click_table, ctr_row

from shopserve import Client
from shopserve.runtime import ray as ray_rt
from shopserve.testing import ShopserveProcess, free_port

# A test cluster on loopback: no token file shared with other users of this machine.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "SHOPSERVE_RAY_REPLICA_CPUS": "0.25", "SHOPSERVE_RAY_ACTOR_CPUS": "0.25"}
ROWS = [ctr_row(i) for i in range(5)]
INFER = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32",
                     "data": [1, 2, 3, 4, 5, 6, 7, 8]}]}
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/rank", {"json": {"candidates": ROWS}}),
    ("POST", "/v1/rank", {"json": {"candidates": [{"I1": 1.0}]}}),  # bad row: 400
    ("POST", "/v1/search", {"json": {"query": "lamp"}}),  # no search model: 400
    ("GET", "/v2/models/linear", {}),
    ("GET", "/v2/models/ctr/ready", {}),
    ("POST", "/v2/models/linear/infer", {"json": INFER}),
    ("POST", "/v2/models/nope/infer", {"json": INFER}),  # 404
    ("GET", "/v2/health/ready", {}),
    ("GET", "/no/such/route", {}),
]


def network(cluster: LocalRayCluster) -> dict[str, Any]:
    """The namespace's interfaces, whether anything beyond loopback is reachable, Ray's nodes."""
    out: dict[str, Any] = {"interfaces": sorted(psutil.net_if_addrs()), "outside": {}}
    for host in ("8.8.8.8", "192.0.2.2"):
        try:
            socket.create_connection((host, 53), timeout=3).close()
            out["outside"][host] = "connected"
        except OSError as exc:
            out["outside"][host] = f"{type(exc).__name__}: {exc}"
    out["nodes"] = [asdict(n) for n in ray_rt.nodes()]
    out["listening"] = sorted({f"{c.laddr.ip}:{c.laddr.port}"
                               for p in cluster.processes() for c in _listening(p)})
    return out


def _listening(proc: psutil.Process) -> list[Any]:
    try:
        return [c for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    except psutil.Error:
        return []


def answers(embedded: ShopserveProcess, ray: ShopserveProcess) -> dict[str, Any]:
    pairs = []
    for method, path, kwargs in CASES:
        got = []
        for server in (embedded, ray):
            r = httpx.request(method, server.url + path, timeout=30, **kwargs)
            got.append([r.status_code, r.json()])
        pairs.append({"case": f"{method} {path}", "embedded": got[0], "ray": got[1]})
    with httpx.Client(base_url=ray.url, timeout=30) as client:
        scores = client.post("/v1/rank", json={"candidates": ROWS}).json()["scores"]
        for _ in range(20):  # over both gateway replicas: each reports its own requests
            client.post("/v1/rank", json={"candidates": ROWS})
        metrics = client.get("/metrics").text
    rank_lines = [line for line in metrics.splitlines()
                  if line.startswith("shopserve_") and '"rank"' in line]
    return {"pairs": pairs, "scores": scores, "rank_metric_lines": len(rank_lines)}


class Traffic:
    """Requests in a loop with the retrying client while a fault runs; failures kept."""

    def __init__(self, url: str) -> None:
        self.url, self.ok = url, 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        with Client(self.url, timeout_s=5.0, retries=10, backoff_s=0.2) as client:
            while not self.stop.is_set():
                try:
                    client.rank([ctr_row(self.ok)])
                    self.ok += 1
                except Exception as exc:  # every failure after retries is kept
                    self.failures.append(repr(exc))

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def replica_kill(cluster: LocalRayCluster, ray: ShopserveProcess) -> dict[str, Any]:
    from shopserve.drill.ray_faults import RayReplicaKillFault, run_ray_fault

    with Traffic(ray.url) as traffic:
        report = run_ray_fault(RayReplicaKillFault(address=cluster.address, deployment="ctr",
                                                   recover_timeout_s=90))
    return {"report": report, "ok": traffic.ok, "failures": traffic.failures}


def batch(cluster: LocalRayCluster, home: Path, work: Path) -> dict[str, Any]:
    data = work / "clicks.parquet"
    pq.write_table(click_table(rows=700, seed=5), data, row_group_size=150)
    exe = [sys.executable, "-m", "shopserve.cli.main", "batch", "predict", "--model", "ctr@1",
           "--input", str(data), "--label-column", "label", "--batch-size", "100"]
    env = {**os.environ, **RAY_ENV, "SHOPSERVE_HOME": str(home)}
    out: dict[str, Any] = {}
    for name, extra in (("local", []), ("ray", ["--engine", "ray", "--workers", "2",
                                                "--address", cluster.address])):
        done = subprocess.run([*exe, "--output", str(work / f"{name}.parquet"), *extra],
                              env=env, timeout=240, capture_output=True, text=True, check=False)
        out[name] = {"code": done.returncode, "output": done.stdout + done.stderr[-3000:],
                     **{suffix: (work / f"{name}{suffix}").read_bytes().hex()
                        for suffix in (".parquet", ".metrics.json", ".errors.jsonl")
                        if (work / f"{name}{suffix}").exists()}}
    return out


def node_kill_drill(cluster: LocalRayCluster, ray: ShopserveProcess, home: Path,
                    work: Path) -> dict[str, Any]:
    """The drill file of docs/scaling.md with this cluster's address, run by the CLI."""
    drill = yaml.safe_load(DRILL_FILE.read_text(encoding="utf-8"))
    requests = work / "rank-requests.jsonl"
    requests.write_text("".join(json.dumps({"route": "rank", "body": {"candidates": [ctr_row(i)]}})
                                + "\n" for i in range(50)), encoding="utf-8")
    drill["extensions"][0]["faults"][0]["address"] = cluster.address
    drill["extensions"][0]["load"]["source"]["file"] = str(requests)
    path = work / "ray-node-kill.yaml"
    path.write_text(yaml.safe_dump(drill), encoding="utf-8")
    journal = work / "journal.json"
    done = subprocess.run(
        [sys.executable, "-m", "shopserve.cli.main", "drill", "run", str(path),
         "--target", ray.url, "--home", str(home), "--journal", str(journal)],
        env={**os.environ, **RAY_ENV}, timeout=300, capture_output=True, text=True, check=False)
    result: dict[str, Any] = {"code": done.returncode, "output": done.stdout + done.stderr[-3000:]}
    if journal.exists():
        ext = json.loads(journal.read_text(encoding="utf-8"))["extensions"][0]
        result["faults"] = ext.get("faults")
        result["verdict"] = ext.get("verdict")
    result["nodes_after"] = [asdict(n) for n in ray_rt.nodes()]
    result["actor_table"] = _replica_table()
    return result


def _replica_table() -> list[dict[str, Any]]:
    """Every replica actor the GCS knows, with its state and node: for a failed step's report."""
    from ray._private import state

    return [{"name": a.get("Name"), "state": a.get("State"),
             "node": a.get("Address", {}).get("NodeID")}
            for a in state.actors().values() if str(a.get("Name", "")).startswith("SERVE_REPLICA")]


DRILL_FILE = Path(__file__).with_name("ray-node-kill.yaml")


def _step(results: dict[str, Any], name: str, run: Callable[[], dict[str, Any]]) -> None:
    try:
        results[name] = run()
    except Exception:  # the test of this step fails with the traceback; later steps still run
        results[name] = {"error": traceback.format_exc()}
    print(f"scenario: {name} done", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--deploy", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    os.environ.update(RAY_ENV)
    work = args.out.parent
    for folder in ("embedded", "ray"):
        (work / folder).mkdir(exist_ok=True)
    results: dict[str, Any] = {}
    cluster = LocalRayCluster(cpus_per_node=1)
    try:
        cluster.start_head()
        cluster.add_node()
        ray_rt.connect(cluster.address)
        _step(results, "network", lambda: network(cluster))
        env = {**RAY_ENV, "SHOPSERVE_HOME": str(args.home)}
        serve = ["serve", str(args.deploy), "--port"]
        with ShopserveProcess([*serve, str(free_port())], env=env, startup_timeout_s=240,
                              log_dir=work / "embedded") as embedded, \
                ShopserveProcess([*serve, str(free_port()), "--backend", "ray", "--address",
                                  cluster.address], env=env, startup_timeout_s=240,
                                 log_dir=work / "ray") as ray:
            _step(results, "answers", lambda: answers(embedded, ray))
            _step(results, "replica_kill", lambda: replica_kill(cluster, ray))
            _step(results, "batch", lambda: batch(cluster, args.home, work))
            _step(results, "node_kill", lambda: node_kill_drill(cluster, ray, args.home, work))
    except Exception:
        results["error"] = traceback.format_exc()
    finally:
        ray_rt.disconnect()
        cluster.stop()
        args.out.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
