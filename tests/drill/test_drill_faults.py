"""Every drill of the catalogue run for real (shortened) against one live deployment, which must
be as it was after each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from drill_helpers import KEYS, assert_as_before, catalogue_data, checks, shortened

from shopserve.drill import DrillRunner
from shopserve.drill.catalogue import catalogue
from shopserve.drill.target import DrillTarget

# catalogue name -> (load s, fault start s, fault duration s) for the test-sized run
SHORT: dict[str, tuple[float, float, float]] = {
    "replica-crash": (5, 1.5, 2), "zone-loss": (5, 1.5, 2), "replica-hang": (6, 1.5, 3),
    "redis-outage": (5, 1.5, 2), "redis-latency": (5, 1.5, 2), "overload": (5, 1.5, 2),
    "corrupt-artifact": (4, 1, 1), "bad-canary": (10, 0.5, 4), "nan-canary": (10, 0.5, 4),
    "slow-canary": (10, 0.5, 4), "front-kill": (9, 1.5, 0.5),
}


def run(name: str, target: DrillTarget) -> dict[str, Any]:
    journal = DrillRunner(shortened(catalogue_data(name), *SHORT[name]), target).run()
    assert set(journal) >= KEYS
    return journal


def test_every_catalogue_drill_is_run_here() -> None:
    assert {entry.name for entry in catalogue()} == set(SHORT)


@pytest.mark.parametrize("name", ["replica-crash", "zone-loss", "replica-hang", "redis-outage",
                                  "redis-latency"])
def test_replica_and_redis_faults_lose_no_request(
        name: str, owned: DrillTarget, drill_home: Path) -> None:
    journal = run(name, owned)
    ext = journal["extensions"][0]
    fault = ext["faults"][0]
    assert fault["state"] == "undone", fault
    assert fault["injected_at"] is not None and fault["rto_s"] is not None
    assert ext["requests_lost"] == 0, ext["windows"]
    assert checks(journal)["steady state after"]
    if name.startswith(("replica", "zone")):
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
    assert ext["faults"][0]["state"] == "undone", ext["faults"][0]["error"]
    assert_as_before(owned, drill_home)


def test_nan_canary_answers_are_caught_by_the_verdict(
        owned: DrillTarget, drill_home: Path) -> None:
    journal = run("nan-canary", owned)
    ext = journal["extensions"][0]
    assert ext["faults"][0]["state"] == "undone", ext["faults"][0]["error"]
    nan_check = next(c for c in ext["checks"] if c["name"] == "answers with a NaN or missing score")
    assert not nan_check["ok"] and nan_check["observed"] > 0, ext["windows"]
    assert ext["verdict"] == "deviated" and ext["exit_code"] == 3
    # The canary guard treats NaN scores as a failed guard, so the canary is pulled too.
    assert checks(journal)["bad canary rolled back automatically"], ext["faults"]
    assert_as_before(owned, drill_home)


def test_slow_canary_is_slower_and_rolled_back(owned: DrillTarget, drill_home: Path) -> None:
    journal = run("slow-canary", owned)
    ext = journal["extensions"][0]
    fault = ext["faults"][0]
    assert fault["state"] == "undone", fault["error"]
    assert fault["detail"]["links"] > 0
    p50 = {v: ms for w in ext["windows"].values() for v, ms in w["version_p50_ms"].items()}
    bad = str(fault["detail"]["bad_version"])
    assert bad in p50 and p50[bad] > p50["1"], p50
    assert checks(journal)["bad canary rolled back automatically"], ext["faults"]
    assert_as_before(owned, drill_home)


def test_overload_spike_raises_the_offered_rate(owned: DrillTarget, drill_home: Path) -> None:
    journal = run("overload", owned)
    wins = journal["extensions"][0]["windows"]
    assert wins["fault"]["requests_per_s"] > 2 * wins["baseline"]["requests_per_s"]
    assert journal["extensions"][0]["faults"][0]["state"] == "undone"
    assert_as_before(owned, drill_home)


def test_front_kill_takes_the_replicas_along_and_the_service_comes_back(
        owned: DrillTarget, drill_home: Path) -> None:
    before = owned.supervisor_pid()
    journal = run("front-kill", owned)
    ext = journal["extensions"][0]
    fault = ext["faults"][0]
    assert fault["state"] == "undone", fault["error"]
    assert checks(journal)["replicas stop with their supervisor"], fault["detail"]
    assert owned.supervisor_pid() != before
    assert_as_before(owned, drill_home)
