"""One real deployment for the drill tests: the demo-shop CTR model, 2 replicas in 2 zones, a
canary that follows ``ctr@canary``, and a shared Redis (a real redis-server on a free port).

The deployment is module-scoped; every drill test leaves it as it found it (``assert_as_before``).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from shopserve.data import DemoShopSpec, generate_demo_shop
from shopserve.drill.deployment import OwnedDeployment
from shopserve.drill.target import DrillTarget
from shopserve.models.ctr import train_ctr
from shopserve.registry import Registry
from shopserve.testing import free_port


@pytest.fixture(scope="module")
def drill_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("drill-home")
    trained = train_ctr(generate_demo_shop(DemoShopSpec.small()),
                        tmp_path_factory.mktemp("drill-ctr"))
    reg = Registry.open(home)
    mv = reg.register("ctr", trained.files, trained.kind, signature=trained.signature,
                      config=trained.config, metrics=trained.metrics)
    reg.promote(mv.ref, "production")
    reg.promote(mv.ref, "canary")
    return home


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    client.close()
    yield f"redis://127.0.0.1:{port}/0"
    proc.kill()
    proc.wait()


def deployment_spec(home: Path, redis_url: str | None = None) -> dict[str, object]:
    spec: dict[str, object] = {
        # the overload drill ranks 100 candidates per request: 8 requests in flight (800 rows)
        # fill a replica before its row queue does, so the excess is refused by admission
        "models": [{"ref": "ctr@production", "queue_limit": 1024,
                    "canary": {"ref": "ctr@canary", "weight": 0.0,
                               "guard": {"min_requests": 5, "max_score_shift": 0.25,
                                         "max_mean_latency_ms": 10.0}}}],
        "replicas": 2, "zones": ["a", "b"], "home": str(home),
        "health": {"interval_s": 0.25, "timeout_s": 0.5, "failures": 2},
        "server": {"max_in_flight": 8},
    }
    if redis_url:
        spec["cache"] = {"redis_url": redis_url}
    return spec


@pytest.fixture(scope="module")
def owned(drill_home: Path, redis_url: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[DrillTarget]:
    deployment = OwnedDeployment(deployment_spec(drill_home, redis_url),
                                 tmp_path_factory.mktemp("drill-deploy"))
    target = deployment.start()
    yield target
    deployment.stop()
