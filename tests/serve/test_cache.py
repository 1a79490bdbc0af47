"""Caches and fallbacks: a real redis-server that goes away and comes back; degraded answers."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serve_models import ctr_row

from shopserve import Client
from shopserve.testing import ShopserveProcess, free_port


def start_redis(port: int, directory: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(directory)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def counter(url: str, layer: str, result: str) -> float:
    text = httpx.get(url + "/metrics").text
    pattern = rf'shopserve_cache_total{{layer="{layer}",result="{result}"}} ([0-9.e+]+)'
    match = re.search(pattern, text)
    return float(match.group(1)) if match else 0.0


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install -y redis-server)")
    yield free_port(), tmp_path_factory.mktemp("redis")


def test_redis_outage_is_bypassed_and_the_cache_comes_back(
    serve_home: Path, tmp_path: Path, redis_port: tuple[int, Path],
) -> None:
    port, directory = redis_port
    redis = start_redis(port, directory)
    spec = {"home": str(serve_home), "replicas": 1, "models": [{"ref": "ctr@production"}],
            "cache": {"size": 0, "redis_url": f"redis://127.0.0.1:{port}/0",
                      "redis_retry_s": 0.5, "redis_timeout_ms": 50}}
    try:
        with ShopserveProcess.from_spec(spec, tmp_path) as server, Client(server.url) as client:
            first = client.rank([ctr_row(1)])
            again = client.rank([ctr_row(1)])
            assert not first["cached"] and again["cached"]
            assert again["scores"] == first["scores"]
            redis.kill()
            redis.wait()
            for i in range(20):  # Redis gone: every request still answered by the model
                answer = client.rank([ctr_row(i + 10)])
                assert answer["fallback"] is False and len(answer["scores"]) == 1
            assert counter(server.url, "redis", "error") >= 1
            assert counter(server.url, "redis", "bypass") >= 1
            redis = start_redis(port, directory)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not client.rank([ctr_row(999)])["cached"]:
                time.sleep(0.2)
            assert client.rank([ctr_row(999)])["cached"], "the Redis cache did not come back"
    finally:
        redis.kill()
        redis.wait()


def test_deadline_falls_back_to_last_good_answer_marked_degraded(
    serve_home: Path, tmp_path: Path,
) -> None:
    spec = {"home": str(serve_home), "replicas": 1,
            "models": [{"ref": "ctr@production", "cache": False,
                        "batching": {"max_queue_delay_ms": 50}}]}
    with ShopserveProcess.from_spec(spec, tmp_path) as server, Client(server.url) as client:
        good = client.rank([ctr_row(5)])
        # a lone request on an idle model runs at once (no batching delay): only a deadline
        # shorter than one trip through the event loop is sure to pass before it runs
        late = client.rank([ctr_row(5)], timeout_ms=0.001)
        assert late["fallback"] is True and late["fallback_source"] == "last_good"
        assert late["scores"] == good["scores"]
        r = httpx.post(server.url + "/v1/rank",
                       json={"candidates": [ctr_row(6)], "timeout_ms": 0.001})
        assert r.status_code == 504 and r.headers["Retry-After"] == "1"
