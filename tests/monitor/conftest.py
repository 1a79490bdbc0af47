"""A registry with two real CTR versions and a drill journal, and a running deployment of it."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from serve_models import click_table

from shopserve.models import CtrTrainSpec, train_ctr_table
from shopserve.registry import Registry
from shopserve.testing import ShopserveProcess

TOKEN = "monitor-token"
# every sampled request is profiled, so that a test's few hundred requests are enough
ENV = {"SHOPSERVE_DRIFT_SAMPLE": "1", "SHOPSERVE_DRIFT_MIN_SAMPLES": "40"}


@pytest.fixture(scope="session")
def monitor_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("monitor-home")
    reg = Registry.open(home)
    work = tmp_path_factory.mktemp("monitor-models")
    for seed in (0, 1):
        trained = train_ctr_table(click_table(seed=seed), work / f"ctr{seed}",
                                  CtrTrainSpec(seed=seed))
        reg.register("ctr", trained.files, trained.kind, signature=trained.signature,
                     config=trained.config, metrics=trained.metrics)
    reg.promote("ctr@1", "production")
    drills = home / "drills"
    drills.mkdir()
    journal = {"experiment": {"title": "kill one replica under load"}, "status": "completed",
               "end": "2026-11-29T10:00:00+00:00", "duration": 31.5,
               "extensions": [{"name": "shopserve", "verdict": "passed"}]}
    (drills / "kill-replica.json").write_text(json.dumps(journal), encoding="utf-8")
    return home


def deployment(home: Path, replicas: int = 2) -> dict[str, object]:
    return {"home": str(home), "replicas": replicas, "zones": ["a", "b"],
            "models": [{"ref": "ctr@production", "batching": {"max_batch_size": 16},
                        "canary": {"ref": "ctr@2", "weight": 0.2,
                                   "guard": {"min_requests": 100000}},
                        "shadow": {"ref": "ctr@2", "fraction": 0.5}},
                       # no cache: a request past its deadline gets the last good answer
                       {"ref": "ctr@1", "name": "ctrnc", "cache": False}],
            "server": {"admin_token": TOKEN}}


@pytest.fixture(scope="module")
def server(monitor_home: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShopserveProcess]:
    with ShopserveProcess.from_spec(deployment(monitor_home), tmp_path_factory.mktemp("srv"),
                                    env=ENV) as proc:
        yield proc


def eval_like_rows(n: int, seed: int = 7, shift: float = 0.0) -> list[dict[str, object]]:
    """Rows from the distribution the versions were evaluated on (``shift`` moves I1)."""
    rows = click_table(rows=n, seed=seed).drop(["label"]).to_pylist()
    for i, row in enumerate(rows):
        row["I1"] = float(row["I1"]) + shift
        row["product_id"] = f"p-{seed}-{i}"
    return rows
