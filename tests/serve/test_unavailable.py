"""Every replica down: the port answers 503 with Retry-After at once, then serves again."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
from serve_models import ctr_row

from shopserve import Client
from shopserve.testing import ShopserveProcess

TOKEN = "t0k3n-unavailable"


def test_all_replicas_down_is_503_with_retry_after_not_a_hang(serve_home: Path,
                                                              tmp_path: Path) -> None:
    spec = {"home": str(serve_home), "replicas": 2, "server": {"admin_token": TOKEN},
            "health": {"interval_s": 0.2, "timeout_s": 0.5},
            "models": [{"ref": "ctr@production", "cache": False}]}
    with ShopserveProcess.from_spec(spec, tmp_path) as server:
        with Client(server.url, admin_token=TOKEN) as admin:
            pids = [int(r["pid"]) for r in admin.admin("status")["replicas"]]
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        seen: list[int] = []
        first_503 = None
        resets = 0
        with httpx.Client(timeout=3) as client:  # a hang would raise ReadTimeout here
            while time.monotonic() - killed < 60:
                try:
                    r = client.post(server.url + "/v1/rank", json={"candidates": [ctr_row(1)]},
                                    headers={"Connection": "close"})
                except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
                    resets += 1  # a dead slot's queued connection, reset when it is closed
                    continue
                seen.append(r.status_code)
                if r.status_code == 503:
                    assert r.headers["Retry-After"] == "1"
                    assert "no replica is ready" in r.json()["error"]
                    first_503 = first_503 or time.monotonic() - killed
                if r.status_code == 200 and first_503 is not None:
                    break
                time.sleep(0.02)
        assert first_503 is not None and first_503 < 3, (seen, resets)
        assert seen[-1] == 200 and set(seen) <= {200, 503}, seen
        with Client(server.url) as client:  # and the retrying client simply gets answers
            assert len(client.rank([ctr_row(2)])["scores"]) == 1
