"""Monitoring of a real deployment (supervisor + 2 replicas in zones a and b), as users see it."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import TOKEN, eval_like_rows

from shopserve import Client
from shopserve.cli.main import main
from shopserve.monitor.feedback import ndcg
from shopserve.testing import ShopserveProcess

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def rank(url: str, rows: list[dict[str, Any]], **headers: str) -> httpx.Response:
    return httpx.post(url + "/v1/rank", json={"model": "ctr", "candidates": rows},
                      headers=headers, timeout=10)


def status(url: str) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(url + "/dashboard/status.json", timeout=10).json()
    return data


def wait_for(check: Any, timeout_s: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


def test_request_id_is_returned_honoured_and_logged(server: ShopserveProcess) -> None:
    mine = rank(server.url, eval_like_rows(1), **{"X-Request-ID": "order-42.a"})
    assert mine.status_code == 200 and mine.headers["X-Request-ID"] == "order-42.a"
    fresh = rank(server.url, eval_like_rows(1, seed=8), **{"X-Request-ID": "bad id\twith space"})
    assert re.fullmatch(r"[0-9a-f]{24}", fresh.headers["X-Request-ID"])
    bad = httpx.post(server.url + "/v1/rank", content=b"{nope",
                     headers={"X-Request-ID": "broken-body-1"})
    assert bad.status_code == 400 and bad.headers["X-Request-ID"] == "broken-body-1"

    def logged() -> dict[str, Any] | None:
        for line in server.output().splitlines():
            if line.startswith("{") and "broken-body-1" in line:
                return dict(json.loads(line))
        return None

    record = wait_for(logged, 5)
    assert record is not None, server.output()[-2000:]
    assert record["status"] == 400 and record["endpoint"] == "rank"
    assert record["level"] == "warning" and record["process"] == "replica"


def test_feedback_is_joined_into_ctr_and_ndcg(server: ShopserveProcess) -> None:
    rows = eval_like_rows(5, seed=11)
    answer = rank(server.url, rows)
    rid, version = answer.headers["X-Request-ID"], answer.json()["version"]
    scores = answer.json()["scores"]
    shown = [rows[i]["product_id"] for i in sorted(range(5), key=lambda i: -scores[i])]
    for product, event in ((shown[1], "click"), (shown[1], "purchase")):
        r = httpx.post(server.url + "/v1/feedback",
                       json={"request_id": rid, "product_id": product, "event": event})
        assert r.status_code == 200 and r.json()["stored"] is True
    bad = httpx.post(server.url + "/v1/feedback", json={"request_id": rid, "product_id": "x",
                                                        "event": "like"})
    assert bad.status_code == 400 and "'event'" in bad.json()["error"]

    def joined() -> dict[str, Any] | None:
        q = status(server.url)["feedback"].get(f"ctr@{version}")
        return q if q and q["requests_with_feedback"] >= 1 else None

    quality = wait_for(joined)
    assert quality is not None
    assert quality["impressions"] >= 1 and quality["purchases"] == 1
    assert quality["ctr"] == pytest.approx(1 / quality["impressions"], rel=1e-3)
    assert quality["ndcg"] == pytest.approx(ndcg(shown, {shown[1]: 2}), rel=1e-4)
    text = httpx.get(server.url + "/metrics").text
    assert f'shopserve_feedback_ctr{{model="ctr",version="{version}"}}' in text
    assert 'shopserve_feedback_events_total{event="purchase"} 1.0' in text


def test_drift_is_flagged_only_for_shifted_traffic(server: ShopserveProcess) -> None:
    with Client(server.url) as client:
        for row in eval_like_rows(160, seed=21):
            client.rank([row], model="ctr")

    def profiled(min_rows: int) -> Any:
        d = next(d for d in status(server.url)["drift"] if d["model"] == "ctr" and
                 d["version"] == 1)
        return d if d["live_rows"] >= min_rows and d["columns"] else None

    calm = wait_for(lambda: profiled(100))
    assert calm is not None and calm["alert"] is False, calm
    with Client(server.url) as client:
        for row in eval_like_rows(200, seed=22, shift=4.0):
            client.rank([row], model="ctr")
    drifted = wait_for(lambda: (d := profiled(250)) and d["alert"] and d)
    assert drifted, status(server.url)["drift"]
    by_column = {c["column"]: c for c in drifted["columns"]}
    assert by_column["I1"]["drifted"] and by_column["I1"]["test"] == "ks"
    assert not by_column["C1"]["drifted"] and by_column["C1"]["test"] == "chi2"
    # each replica recomputes at most every 2 s: any scrape shows it soon
    assert wait_for(lambda: 'shopserve_drift_alert{model="ctr",version="1"} 1.0' in httpx.get(
        server.url + "/metrics").text, 6)


def test_drift_and_status_commands_against_the_service(
        server: ShopserveProcess, capsys: pytest.CaptureFixture[str]) -> None:
    # Every replica merges all replicas' sampled rings, but each writes its ring once a second and
    # recomputes at most every 2 s (docs/monitoring.md): a replica that did not answer the shifted
    # traffic of the test above shows the drift a moment later.
    def drift_table() -> str | None:
        assert main(["monitor", "drift", "--model", "ctr", "--url", server.url]) == 0
        out = capsys.readouterr().out
        return out if "DRIFT" in out else None

    table = wait_for(drift_table, 10)
    assert table is not None
    assert re.search(r"ctr@1\s+I1\s+\d+\s+[\d.]+\s+ks", table)
    def drift_report() -> dict[str, Any] | None:
        assert main(["monitor", "drift", "--model", "ctr", "--url", server.url, "--json"]) == 0
        report: dict[str, Any] = json.loads(capsys.readouterr().out)
        return report if report["alert"] is True else None

    report = wait_for(drift_report, 10)
    assert report is not None and {r["version"] for r in report["reports"]} == {1, 2}
    assert main(["monitor", "status", "--url", server.url]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^a\s+1\s+1\s+1$", out, re.M) and re.search(r"^b\s+1\s+1\s+1$", out, re.M)
    assert re.search(r"ctr\s+rank\s+2\s+canary\s+0\.20", out)
    assert re.search(r"kill one replica under load\s+passed", out)
    assert main(["monitor", "drift", "--model", "nosuch", "--url", server.url]) == 3


def scrape(url: str) -> str:
    try:  # while the killed replica's slot is replaced, a connection may be reset
        return httpx.get(url + "/metrics", timeout=5).text
    except httpx.HTTPError:
        return ""


def metric_names(text: str) -> set[str]:
    names = set(re.findall(r"\b(shopserve_[a-z_]+)\b", text))
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}


def test_every_metric_of_the_rules_and_dashboard_is_exported(server: ShopserveProcess) -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus-rules.yaml").read_text(encoding="utf-8"))
    exprs = " ".join(r["expr"] for g in rules["groups"] for r in g["rules"])
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text(encoding="utf-8"))
    exprs += " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    wanted = metric_names(exprs)
    assert {"shopserve_requests_total", "shopserve_request_duration_seconds",
            "shopserve_replicas_ready", "shopserve_drift_alert"} <= wanted
    with Client(server.url) as client:  # traffic: cache hits and misses, shadow calls
        for row in eval_like_rows(10, seed=32) * 2:
            client.rank([row], model="ctr")
    answer = rank(server.url, eval_like_rows(1, seed=33))
    httpx.post(server.url + "/v1/feedback", json={
        "request_id": answer.headers["X-Request-ID"], "product_id": "p-33-0", "event": "click"})
    # events that are rare in normal traffic: a deadline with a fallback, a replica crash
    row = eval_like_rows(1, seed=31)
    with httpx.Client(base_url=server.url) as http:  # one connection: the same replica
        assert http.post("/v1/rank", json={"model": "ctrnc", "candidates": row}) \
            .status_code == 200
        late = http.post("/v1/rank", json={"model": "ctrnc", "candidates": row,
                                           "timeout_ms": 0.001}).json()
    assert late["fallback_source"] == "last_good"
    with Client(server.url, admin_token=TOKEN) as client:
        os.kill(client.admin("status")["replicas"][0]["pid"], signal.SIGKILL)
    text = wait_for(lambda: (t := scrape(server.url)) and "shopserve_replica_restarts_total" in t
                    and "shopserve_replicas_ready" in t and t, 20)
    assert text
    exported = metric_names("\n".join(line for line in text.splitlines()
                                      if not line.startswith("#")))
    missing = sorted(n for n in wanted if n not in exported and f"{n}_total" not in exported)
    assert not missing, f"referenced but not exported: {missing}"
