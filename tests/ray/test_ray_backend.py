"""The Ray backend on a real two-node cluster: same answers as the embedded backend, a killed
replica actor replaced by Ray under traffic, and the same batch output bytes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from cluster import LocalRayCluster
from conftest import RAY_ENV
from serve_models import click_table, ctr_row

from shopserve import Client
from shopserve.testing import ShopserveProcess

pytestmark = [
    pytest.mark.ray, pytest.mark.timeout(400),
    # raised inside ray.serve's own pydantic models when the drills import it
    pytest.mark.filterwarnings("ignore:Using extra keyword arguments on `Field`"
                               ":pydantic.warnings.PydanticDeprecatedSince20"),
]

ROWS = [ctr_row(i) for i in range(5)]
INFER = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32",
                     "data": [1, 2, 3, 4, 5, 6, 7, 8]}]}


def _both(embedded: ShopserveProcess, ray: ShopserveProcess, method: str, path: str,
          **kwargs: object) -> tuple[httpx.Response, httpx.Response]:
    a = httpx.request(method, embedded.url + path, timeout=30, **kwargs)  # type: ignore[arg-type]
    b = httpx.request(method, ray.url + path, timeout=30, **kwargs)  # type: ignore[arg-type]
    return a, b


def test_same_answers_as_embedded(embedded_server: ShopserveProcess,
                                  ray_server: ShopserveProcess) -> None:
    cases = [
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
    for method, path, kwargs in cases:
        a, b = _both(embedded_server, ray_server, method, path, **kwargs)
        assert (b.status_code, b.json()) == (a.status_code, a.json()), (method, path)
    scores = httpx.post(ray_server.url + "/v1/rank", json={"candidates": ROWS}).json()["scores"]
    assert len(scores) == len(ROWS) and all(0 < s < 1 for s in scores)
    with httpx.Client(base_url=ray_server.url) as client:
        for _ in range(20):  # over both gateway replicas: each reports its own requests
            client.post("/v1/rank", json={"candidates": ROWS})
        metrics = client.get("/metrics").text
    samples = [line for line in metrics.splitlines()
               if line.startswith("shopserve_") and '"rank"' in line]
    assert samples, "the gateway's /metrics shows no rank requests"


def test_batch_predict_on_ray_matches_local(ray_cluster: LocalRayCluster, ray_home: Path,
                                            tmp_path: Path) -> None:
    data = tmp_path / "clicks.parquet"
    pq.write_table(click_table(rows=700, seed=5), data, row_group_size=150)
    exe = [sys.executable, "-m", "shopserve.cli.main", "batch", "predict", "--model", "ctr@1",
           "--input", str(data), "--label-column", "label", "--batch-size", "100"]
    env = {**os.environ, **RAY_ENV, "SHOPSERVE_HOME": str(ray_home)}
    local, on_ray = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    for out, extra in ((local, []), (on_ray, ["--engine", "ray", "--workers", "2",
                                              "--address", ray_cluster.address])):
        done = subprocess.run([*exe, "--output", str(out), *extra], env=env, timeout=240,
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "wrote 700 rows" in done.stdout
    assert on_ray.read_bytes() == local.read_bytes()
    assert (tmp_path / "ray.metrics.json").read_bytes() == \
        (tmp_path / "local.metrics.json").read_bytes()
    assert (tmp_path / "ray.errors.jsonl").read_bytes() == b""


class _Traffic:
    """Requests in a loop with the retrying client while a fault runs; failures kept."""

    def __init__(self, url: str) -> None:
        self.url, self.ok, self.failures = url, 0, []  # type: ignore[var-annotated]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        with Client(self.url, timeout_s=5.0, retries=10, backoff_s=0.2) as client:
            while not self.stop.is_set():
                try:
                    client.rank([ctr_row(self.ok)])
                    self.ok += 1
                except Exception as exc:  # every failure after retries is a test failure
                    self.failures.append(repr(exc))

    def __enter__(self) -> _Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def test_killed_replica_actor_is_replaced(ray_cluster: LocalRayCluster,
                                          ray_server: ShopserveProcess) -> None:
    from shopserve.drill.ray_faults import RayReplicaKillFault, run_ray_fault

    with _Traffic(ray_server.url) as traffic:
        report = run_ray_fault(RayReplicaKillFault(address=ray_cluster.address,
                                                   deployment="ctr", recover_timeout_s=90))
    assert len(report["lost"]) == 1 and "#ctr#" in report["lost"][0]
    assert len(report["replaced_by"]) == 1 and report["recovered_s"] is not None
    assert traffic.failures == [] and traffic.ok > 0

