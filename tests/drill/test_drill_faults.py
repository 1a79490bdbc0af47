"""Every shipped drill run for real against one live deployment, which must be as it was after."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil
import pytest

from shopserve.drill import DrillRunner, load_drill
from shopserve.drill.target import DrillTarget
from shopserve.registry import Registry

DRILLS = Path(__file__).resolve().parents[2] / "drills"

KEYS = {"experiment", "status", "deviated", "steady_states", "run", "rollbacks", "start", "end",
        "duration", "extensions"}


def run(name: str, target: DrillTarget) -> dict[str, Any]:
    journal = DrillRunner(load_drill(DRILLS / f"{name}.yaml"), target).run()
    assert set(journal) >= KEYS
    return journal


def checks(journal: dict[str, Any]) -> dict[str, bool]:
    return {c["name"]: c["ok"] for c in journal["extensions"][0]["checks"]}


def assert_as_before(target: DrillTarget, home: Path) -> None:
    replicas = target.replicas()
    assert len(replicas) == 2 and all(r.state == "ready" for r in replicas)
    assert all(psutil.Process(r.pid).status() != psutil.STATUS_STOPPED for r in replicas)
    assert target.status()["state"]["canary_weights"].get("ctr", 0.0) == 0.0
    reg = Registry.open(home)
    assert [v.version for v in reg.list_versions("ctr")] == [1]
    assert reg.get("ctr@canary").version == 1 and reg.get("ctr@production").version == 1


@pytest.mark.parametrize("name", ["replica-crash", "zone-loss", "replica-hang", "redis-outage"])
def test_replica_and_redis_faults_lose_no_request(
        name: str, owned: DrillTarget, drill_home: Path) -> None:
    journal = run(name, owned)
    ext = journal["extensions"][0]
    fault = ext["faults"][0]
    assert fault["state"] == "undone", fault
    assert fault["injected_at"] is not None and fault["rto_s"] is not None
    assert ext["requests_lost"] == 0, ext["windows"]
    assert checks(journal)["steady state after"]
    if name != "redis-outage":
        assert fault["time_to_detect_s"] is not None  # the supervisor replaced a replica
    assert_as_before(owned, drill_home)


def test_corrupted_artifact_is_refused_and_old_version_keeps_serving(
        owned: DrillTarget, drill_home: Path) -> None:
    journal = run("corrupt-artifact", owned)
    got = checks(journal)
    assert got["deploy of the corrupted version refused"], journal["extensions"][0]["faults"]
    assert got["the old version keeps serving"]
    assert journal["extensions"][0]["requests_lost"] == 0
    assert_as_before(owned, drill_home)


def test_bad_canary_is_rolled_back_automatically(owned: DrillTarget, drill_home: Path) -> None:
    journal = run("bad-canary", owned)
    ext = journal["extensions"][0]
    assert checks(journal)["bad canary rolled back automatically"], ext["faults"]
    assert ext["faults"][0]["state"] == "undone"
    assert_as_before(owned, drill_home)


def test_overload_spike_raises_the_offered_rate(owned: DrillTarget, drill_home: Path) -> None:
    journal = run("overload", owned)
    wins = journal["extensions"][0]["windows"]
    assert wins["fault"]["requests_per_s"] > 2 * wins["baseline"]["requests_per_s"]
    assert journal["extensions"][0]["faults"][0]["state"] == "undone"
    assert_as_before(owned, drill_home)
