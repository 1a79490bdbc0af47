"""A real two-node Ray cluster on this machine (1 CPU each), a registry with tiny real models,
and the same deployment file served by the embedded backend and by Ray Serve."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parents[1] / "serve"))  # the serving tests' tiny models

from cluster import LocalRayCluster
from serve_models import click_table, linear_onnx

from shopserve.models import CtrTrainSpec, train_ctr_table
from shopserve.registry import Registry
from shopserve.runtime import ray as ray_rt
from shopserve.testing import ShopserveProcess, free_port
from shopserve.types import ModelKind

# Loopback test cluster: no token file shared with other users of this machine.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "SHOPSERVE_RAY_REPLICA_CPUS": "0.25", "SHOPSERVE_RAY_ACTOR_CPUS": "0.25"}
DEPLOYMENT = {
    "models": [{"ref": "ctr@1", "batching": {"max_batch_size": 16, "max_queue_delay_ms": 2},
                "cache": False},
               {"ref": "linear@1", "cache": False}],
    "replicas": 2,
    "server": {"host": "127.0.0.1", "port": 8000},
}


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[LocalRayCluster]:
    if not ray_rt.available():
        pytest.skip("Ray is not installed (pip install 'shopserve[ray]')")
    saved = {k: os.environ.get(k) for k in RAY_ENV}
    os.environ.update(RAY_ENV)
    cluster = LocalRayCluster(cpus_per_node=1)
    try:
        cluster.start_head()
        cluster.add_node()
        yield cluster
    finally:
        ray_rt.disconnect()
        cluster.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def ray_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
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


def _serve(deploy_file: Path, home: Path, *extra: str) -> ShopserveProcess:
    args = ["serve", str(deploy_file), "--port", str(free_port()), *extra]
    return ShopserveProcess(args, env={**RAY_ENV, "SHOPSERVE_HOME": str(home)},
                            startup_timeout_s=240, log_dir=deploy_file.parent)


@pytest.fixture(scope="session")
def embedded_server(deploy_file: Path, ray_home: Path) -> Iterator[ShopserveProcess]:
    with _serve(deploy_file, ray_home) as server:
        yield server


@pytest.fixture(scope="session")
def ray_server(ray_cluster: LocalRayCluster, deploy_file: Path,
               ray_home: Path) -> Iterator[ShopserveProcess]:
    server = _serve(deploy_file, ray_home, "--backend", "ray", "--address", ray_cluster.address)
    server.log_path = deploy_file.parent / "ray-server.log"
    with server:
        yield server
