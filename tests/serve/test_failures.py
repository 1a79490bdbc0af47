"""Replicas that crash or hang, rolling updates, canary guard, graceful stop: nothing lost."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serve_models import ctr_row

from shopserve import Client, InputError
from shopserve.testing import ShopserveProcess

TOKEN = "t0k3n"


class Load:
    """Background threads calling /v1/rank with the retrying client, counting failures."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url = url
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.versions: set[int] = set()
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(threads)]

    def run(self, seed: int) -> None:
        with Client(self.url, timeout_s=2.0, retries=8, backoff_s=0.05) as client:
            i = seed * 100_000
            while not self.stop.is_set():
                i += 1
                try:
                    answer = client.rank([ctr_row(i)], timeout_ms=1500)
                    self.ok += 1
                    self.versions.add(answer["version"])
                except Exception as exc:
                    self.failures.append(repr(exc))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def replicas(url: str) -> list[dict[str, object]]:
    with Client(url, admin_token=TOKEN) as client:
        return list(client.admin("status")["replicas"])


def wait_for(check: object, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def wait_job(admin: Client, event: str) -> None:
    wait_for(lambda: admin.admin("status")["job"] is None, timeout_s=120)
    assert admin.admin("status")["state"]["events"][-1] == event


@pytest.fixture(scope="module")
def server(serve_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    spec = {"home": str(serve_home), "replicas": 2, "zones": ["a", "b"],
            "health": {"interval_s": 0.2, "timeout_s": 0.5, "failures": 2},
            "models": [{"ref": "ctr@production", "cache": False,
                        "canary": {"ref": "ctr@2", "weight": 0.0,
                                   "guard": {"min_requests": 5, "max_score_shift": 0.0}}}],
            "server": {"admin_token": TOKEN}}
    with ShopserveProcess.from_spec(spec, tmp_path_factory.mktemp("fail")) as proc:
        yield proc.url


def test_killed_replica_loses_no_request_and_comes_back(server: str) -> None:
    before = replicas(server)
    victim = int(before[0]["pid"])  # type: ignore[call-overload]
    with Load(server) as load:
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: all(r["state"] == "ready" and r["pid"] != victim
                             for r in replicas(server)))
        time.sleep(0.3)
    assert load.failures == [] and load.ok > 0
    assert "shopserve_replica_restarts_total{reason=\"crashed\"}" in httpx.get(
        server + "/metrics").text


def test_hung_replica_is_detected_by_deadline_and_replaced(server: str) -> None:
    victim = int(replicas(server)[1]["pid"])  # type: ignore[call-overload]
    os.kill(victim, signal.SIGSTOP)
    try:
        wait_for(lambda: all(r["state"] == "ready" and r["pid"] != victim
                             for r in replicas(server)))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
    with Client(server) as client:
        assert client.rank([ctr_row(1)])["fallback"] is False


def test_rolling_update_fails_no_request(server: str) -> None:
    with Load(server) as load, Client(server, admin_token=TOKEN, timeout_s=120) as admin:
        time.sleep(0.3)
        assert admin.admin("deploy", model="ctr", ref="ctr@2")["status"] == "started"
        wait_job(admin, "deploy ctr ctr@2: done")
        time.sleep(0.3)
    assert load.failures == []
    assert 2 in load.versions
    with Client(server) as client:
        assert client.rank([ctr_row(3)])["version"] == 2
    with Client(server, admin_token=TOKEN, timeout_s=120) as admin:
        admin.admin("rollback", model="ctr")
        wait_job(admin, "rollback ctr ctr@1: done")
    with Client(server) as client:
        assert client.rank([ctr_row(3)])["version"] == 1


def test_draining_a_zone_replaces_its_replica_without_failures(server: str) -> None:
    before = {r["zone"]: r["pid"] for r in replicas(server)}
    with Load(server) as load, Client(server, admin_token=TOKEN) as admin:
        assert admin.admin("drain", zone="b")["status"] == "started"
        wait_job(admin, "drain slots [1]: done")
    after = {r["zone"]: r["pid"] for r in replicas(server)}
    assert after["a"] == before["a"] and after["b"] != before["b"]
    assert load.failures == [] and load.ok > 0
    with Client(server, admin_token=TOKEN) as admin, pytest.raises(InputError, match="zone"):
        admin.admin("drain", zone="z")


def test_canary_breaking_its_guard_is_rolled_back_by_itself(server: str) -> None:
    with Client(server, admin_token=TOKEN) as admin:
        admin.admin("canary", model="ctr", weight=0.5)
        time.sleep(0.6)  # replicas read the new weight within 0.25 s
        with Client(server) as client:
            seen = {client.rank([ctr_row(i)])["version"] for i in range(60)}
        assert seen == {1, 2}
        with Client(server) as client:
            def rolled_back() -> bool:
                for i in range(10):  # keep traffic flowing while the guard watches
                    client.rank([ctr_row(i + 1000)])
                return any("rolled back automatically" in e
                           for e in admin.admin("status")["state"]["events"])
            wait_for(rolled_back)
        time.sleep(0.6)  # replicas pick the new weight up within 0.25 s
    with Client(server) as client:
        assert {client.rank([ctr_row(i)])["version"] for i in range(30)} == {1}


def test_sigterm_drains_in_flight_requests_and_stops(serve_home: Path, tmp_path: Path) -> None:
    # a long batching delay keeps the request in flight while SIGTERM arrives
    spec = {"home": str(serve_home), "replicas": 1,
            "models": [{"ref": "linear@1", "cache": False,
                        "batching": {"max_queue_delay_ms": 800, "max_batch_size": 64}}]}
    proc = ShopserveProcess.from_spec(spec, tmp_path).start()
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]}]}
    result: list[httpx.Response] = []
    try:
        assert httpx.get(proc.url + "/v2/health/ready").status_code == 200
        caller = threading.Thread(target=lambda: result.append(
            httpx.post(proc.url + "/v2/models/linear/infer", json=body, timeout=10)))
        caller.start()
        time.sleep(0.3)
        code = proc.stop()
        caller.join(timeout=10)
    finally:
        proc.kill()
    assert code == 0, proc.output()
    assert "shopserve stopped" in proc.output()
    assert result and result[0].status_code == 200, result


def test_testing_helper_fails_fast_with_the_server_output(serve_home: Path,
                                                          tmp_path: Path) -> None:
    spec = {"home": str(serve_home), "models": [{"ref": "linear@77"}]}
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="exited with code 3") as info:
        ShopserveProcess.from_spec(spec, tmp_path).start()
    assert "linear@77" in str(info.value) or "77" in str(info.value)
    assert time.monotonic() - started < 30
