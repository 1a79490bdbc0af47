"""Feedback is on disk before the 200: kill the whole service right after and read the log."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import httpx
from conftest import ENV, deployment, eval_like_rows

from shopserve.testing import ShopserveProcess


def test_feedback_survives_a_kill_right_after_the_200(monitor_home: Path,
                                                      tmp_path: Path) -> None:
    proc = ShopserveProcess.from_spec(deployment(monitor_home, replicas=1), tmp_path, env=ENV)
    with proc:
        answer = httpx.post(proc.url + "/v1/rank", json={"model": "ctr",
                                                         "candidates": eval_like_rows(3)})
        rid = answer.headers["X-Request-ID"]
        r = httpx.post(proc.url + "/v1/feedback",
                       json={"request_id": rid, "product_id": "p-7-2", "event": "purchase"})
        assert r.status_code == 200
        assert proc.process is not None
        os.killpg(proc.process.pid, signal.SIGKILL)  # no drain, no flush, no goodbye
        proc.process.wait()
    log = monitor_home / "monitor" / "feedback.jsonl"
    records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    mine = [r for r in records if r["request_id"] == rid]
    assert len(mine) == 1
    assert (mine[0]["product_id"], mine[0]["event"]) == ("p-7-2", "purchase")
