"""A registry holding the small demo shop's CTR model, and a real server for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shopserve.data import DemoShopSpec, generate_demo_shop
from shopserve.models import train_and_register
from shopserve.registry import Registry
from shopserve.testing import ShopserveProcess
from shopserve.types import ModelKind


@pytest.fixture(scope="session")
def tune_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("tune-home")
    registry = Registry.open(home)
    version = train_and_register(ModelKind.RANK, generate_demo_shop(DemoShopSpec.small()),
                                 registry, "ctr")
    registry.promote(version.ref, "production")
    return home


@pytest.fixture(scope="session")
def ctr_server(tune_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    spec = {"home": str(tune_home), "replicas": 1, "cache": {"size": 1000, "ttl_s": 60},
            "models": [{"ref": "ctr@production"}]}
    with ShopserveProcess.from_spec(spec, tmp_path_factory.mktemp("ctr-server")) as server:
        yield server.url
