"""Helpers shared by the drill tests: test-sized drills, journal checks, the as-before check."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import psutil
import yaml

from shopserve.drill import DrillSpec, parse_drill
from shopserve.drill.catalogue import drills_dir
from shopserve.drill.target import DrillTarget
from shopserve.registry import Registry

REPO_DRILLS = Path(__file__).resolve().parents[2] / "drills"
SHOPSERVE = str(Path(sys.executable).with_name("shopserve"))
KEYS = {"experiment", "status", "deviated", "steady_states", "run", "rollbacks", "start", "end",
        "duration", "extensions"}


def catalogue_data(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((drills_dir() / f"{name}.yaml").read_text("utf-8"))
    return data


def shortened(data: dict[str, Any], load_s: float, start_s: float, duration_s: float,
              probe_s: float = 0.3) -> DrillSpec:
    """A drill with test-sized windows: the same faults, SLOs and probes, shorter."""
    ext = next(e for e in data["extensions"] if e["name"] == "shopserve")
    ext["load"]["duration_s"] = load_s
    for fault in ext["faults"]:
        fault.update(start_s=start_s, duration_s=duration_s)
    for probe in (data.get("steady-state-hypothesis") or {}).get("probes", []):
        args = probe["provider"].get("arguments")
        if isinstance(args, dict) and "seconds" in args:
            args["seconds"] = probe_s
    return parse_drill(data, "test drill")


def checks(journal: dict[str, Any]) -> dict[str, bool]:
    return {c["name"]: c["ok"] for c in journal["extensions"][0]["checks"]}


def stopped_children(target: DrillTarget) -> list[int]:
    return [r.pid for r in target.replicas()
            if psutil.pid_exists(r.pid)
            and psutil.Process(r.pid).status() == psutil.STATUS_STOPPED]


def assert_as_before(target: DrillTarget, home: Path) -> None:
    """Two ready replicas, none frozen, canary weight 0, the registry holding only version 1."""
    replicas = target.replicas()
    assert len(replicas) == 2 and all(r.state == "ready" for r in replicas), replicas
    assert not stopped_children(target)
    assert target.status()["state"]["canary_weights"].get("ctr", 0.0) == 0.0
    assert target.redis_proxy is None or target.redis_proxy.fault is None
    reg = Registry.open(home)
    assert [v.version for v in reg.list_versions("ctr")] == [1]
    assert reg.get("ctr@canary").version == 1 and reg.get("ctr@production").version == 1
