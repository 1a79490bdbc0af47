"""Ray test fixtures: a registry with tiny real models and one deployment file for both backends.

The two-node cluster runs inside a network namespace the tests make (``netns.py``), with
everything that talks to it (``scenario.py``); a one-node Ray runs on this machine's loopback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parents[1] / "serve"))  # the serving tests' tiny models

from netns import NetworkNamespace, unavailable_reason
from serve_models import click_table, linear_onnx

from shopserve.models import CtrTrainSpec, train_ctr_table
from shopserve.registry import Registry
from shopserve.runtime import ray as ray_rt
from shopserve.types import ModelKind

DEPLOYMENT = {
    "models": [{"ref": "ctr@1", "batching": {"max_batch_size": 16, "max_queue_delay_ms": 2},
                "cache": False},
               {"ref": "linear@1", "cache": False}],
    "replicas": 2,
    "server": {"host": "127.0.0.1", "port": 8000},
}
SCENARIO = Path(__file__).with_name("scenario.py")


@pytest.fixture(scope="session")
def ray_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not ray_rt.available():
        pytest.skip("Ray is not installed (pip install 'shopserve[ray]')")
    home = tmp_path_factory.mktemp("ray-home")
    work = tmp_path_factory.mktemp("ray-models")
    reg = Registry.open(home)
    reg.register("linear", {"model.onnx": linear_onnx(work / "linear.onnx")}, ModelKind.GENERIC)
    trained = train_ctr_table(click_table(seed=0), work / "ctr", CtrTrainSpec(seed=0))
    reg.register("ctr", trained.files, trained.kind, signature=trained.signature,
                 config=trained.config, metrics=trained.metrics)
    return home


@pytest.fixture(scope="session")
def deploy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ray-deploy") / "deploy.yaml"
    path.write_text(yaml.safe_dump(DEPLOYMENT), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def netns() -> Iterator[NetworkNamespace]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"the two-node Ray cluster runs in its own network namespace: {reason}")
    with NetworkNamespace() as ns:
        yield ns


@pytest.fixture(scope="module")
def scenario(netns: NetworkNamespace, ray_home: Path, deploy_file: Path,
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``scenario.py`` run once inside the namespace; its observations, step by step."""
    out = tmp_path_factory.mktemp("ray-scenario") / "result.json"
    done = subprocess.run(
        [*netns.prefix(), sys.executable, str(SCENARIO), "--home", str(ray_home),
         "--deploy", str(deploy_file), "--out", str(out)],
        capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0 and out.exists(), done.stdout + done.stderr
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    assert "error" not in result, result["error"]
    return result


def step(scenario: dict[str, Any], name: str) -> dict[str, Any]:
    """One step's observations, or the test fails with that step's traceback."""
    assert name in scenario, f"the scenario did not get to {name!r}"
    got: dict[str, Any] = scenario[name]
    assert "error" not in got, got["error"]
    return got
