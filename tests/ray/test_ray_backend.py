"""The Ray backend on a real two-node cluster in a private network namespace: same answers as
the embedded backend, a killed replica actor and a lost worker node replaced by Ray under
traffic, and the same batch output bytes."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import step

pytestmark = [pytest.mark.ray, pytest.mark.timeout(700)]


def test_cluster_is_on_loopback_with_no_route_out(scenario: dict[str, Any]) -> None:
    net = step(scenario, "network")
    assert net["interfaces"] == ["lo"]
    for host, outcome in net["outside"].items():
        assert "unreachable" in outcome.lower(), (host, outcome)
    assert len(net["nodes"]) == 2 and sum(n["head"] for n in net["nodes"]) == 1
    assert {n["address"] for n in net["nodes"]} == {"127.0.0.1"}
    assert net["listening"], "no listening socket found for the cluster's processes"


def test_same_answers_as_embedded(scenario: dict[str, Any]) -> None:
    got = step(scenario, "answers")
    for pair in got["pairs"]:
        assert pair["ray"] == pair["embedded"], pair["case"]
    assert len(got["scores"]) == 5 and all(0 < s < 1 for s in got["scores"])
    assert got["rank_metric_lines"] > 0, "the gateway's /metrics shows no rank requests"


def test_batch_predict_on_ray_matches_local(scenario: dict[str, Any]) -> None:
    got = step(scenario, "batch")
    for run in ("local", "ray"):
        assert got[run]["code"] == 0, got[run]["output"]
        assert "wrote 700 rows" in got[run]["output"]
    for suffix in (".parquet", ".metrics.json"):
        assert got["ray"][suffix] and got["ray"][suffix] == got["local"][suffix], suffix
    assert got["ray"][".errors.jsonl"] == ""


def test_killed_replica_actor_is_replaced(scenario: dict[str, Any]) -> None:
    got = step(scenario, "replica_kill")
    report = got["report"]
    assert len(report["lost"]) == 1 and "#ctr#" in report["lost"][0]
    assert len(report["replaced_by"]) == 1 and report["recovered_s"] is not None
    assert got["failures"] == [] and got["ok"] > 0


def test_drill_kills_a_worker_node_and_ray_serve_recovers(scenario: dict[str, Any]) -> None:
    got = step(scenario, "node_kill")
    assert got["code"] == 0, got["output"]
    assert got["verdict"] == "passed", got["output"]
    (fault,) = got["faults"]
    assert fault["type"] == "ray-node-kill" and fault["state"] == "undone", fault
    detail = fault["detail"]
    killed = detail["node"]
    assert detail["lost"], "the killed node held no replica"
    assert detail["after"]["nodes"][killed] is False
    after = detail["after"]["replicas"]
    assert after and killed not in after.values() and not set(detail["lost"]) & set(after)
    assert detail["recovered_s"] is not None
    assert {n["node_id"]: n["alive"] for n in got["nodes_after"]}[killed] is False
