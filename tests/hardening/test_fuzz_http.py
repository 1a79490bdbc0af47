"""The HTTP API fuzzed from its own OpenAPI document (schemathesis) and with hostile Open
Inference Protocol binary requests, against a running server: never a 5xx, never a dead
replica, every 4xx a JSON body whose ``error`` says what was wrong."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_parsers import binary_requests

from shopserve.testing import ShopserveProcess

ADMIN = "fuzz-admin-token"


@pytest.fixture(scope="module")
def server(serve_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    spec = {"home": str(serve_home), "replicas": 2, "server": {"admin_token": ADMIN},
            "models": [{"ref": "ctr@production"}, {"ref": "linear@1"},
                       {"ref": "rec@1", "name": "rec", "fallback": {"popular": ["p-1"]}}]}
    with ShopserveProcess.from_spec(spec, tmp_path_factory.mktemp("fuzz")) as proc:
        yield proc.url


def readable(response: Any) -> None:
    """No 5xx but the documented 503/504 back-pressure ones; every 4xx says what was wrong."""
    status = response.status_code
    assert status < 500 or status in (503, 504), (status, response.text[:300])
    if 400 <= status < 500:
        body = json.loads(response.content)
        assert isinstance(body.get("error"), str) and body["error"].strip(), body


def test_every_route_survives_what_its_schema_allows_and_more(server: str) -> None:
    schema = schemathesis.openapi.from_url(server + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        @settings(max_examples=25, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def fuzz(case: Any) -> None:
            readable(case.call(base_url=server, timeout=10))

        fuzz()


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(request=binary_requests(), model=st.sampled_from(["linear", "ctr"]))
def test_hostile_binary_tensors_get_4xx(server: str, request: tuple[bytes, str | None],
                                        model: str) -> None:
    body, length = request
    # header values an HTTP client cannot send at all are the codec test's business
    assume(length is None or (length.isascii() and length.isprintable()
                              and length == length.strip() and length != ""))
    headers = {"Content-Type": "application/octet-stream"}
    if length is not None:
        headers["Inference-Header-Content-Length"] = length
    r = httpx.post(f"{server}/v2/models/{model}/infer", content=body, headers=headers,
                   timeout=10)
    readable(r)


def test_the_replicas_are_still_the_same_processes(server: str) -> None:
    with httpx.Client(base_url=server, timeout=5) as http:
        status = http.get("/admin/status", headers={"Authorization": f"Bearer {ADMIN}"}).json()
        metrics = http.get("/metrics").text
    assert all(r["state"] == "ready" for r in status["replicas"])
    assert "shopserve_replica_restarts_total{" not in metrics  # none crashed, none hung
