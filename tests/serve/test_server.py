"""A real deployment (supervisor + 2 replicas) as users meet it: endpoints, protocol, bad input."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from serve_models import WEIGHTS, ctr_row

from shopserve import AsyncClient, Client, InputError, NotFoundError
from shopserve.testing import ShopserveProcess

TOKEN = "test-token"


@pytest.fixture(scope="module")
def server(serve_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    spec = {"home": str(serve_home), "replicas": 2,
            "models": [{"ref": "ctr@production", "batching": {"max_batch_size": 16},
                        "shadow": {"ref": "ctr@2"}},
                       {"ref": "linear@production", "cache": False},
                       {"ref": "linear@1", "name": "tight", "cache": False, "queue_limit": 2,
                        "batching": {"max_queue_delay_ms": 300, "max_batch_size": 64}},
                       {"ref": "rec@1", "timeout_ms": 2000,
                        "batching": {"max_queue_delay_ms": 100},
                        "fallback": {"popular": ["p-a", "p-b", "p-c"], "last_good": False}}],
            "server": {"admin_token": TOKEN, "max_body_bytes": 64 * 1024}}
    with ShopserveProcess.from_spec(spec, tmp_path_factory.mktemp("srv")) as proc:
        yield proc.url


def test_ready_live_and_openapi(server: str) -> None:
    assert httpx.get(server + "/v2/health/live").json() == {"live": True}
    assert httpx.get(server + "/v2/health/ready").status_code == 200
    doc = httpx.get(server + "/openapi.json").json()
    for path in ("/v1/rank", "/v1/search", "/v1/recommend", "/v2/models/{name}/infer",
                 "/v2/health/ready", "/metrics", "/admin/{action}"):
        assert path in doc["paths"]


def test_rank_names_version_and_is_not_a_fallback(server: str) -> None:
    with Client(server) as client:
        answer = client.rank([ctr_row(i) for i in range(5)])
    assert answer["model"] == "ctr" and answer["version"] == 1
    assert answer["fallback"] is False
    assert len(answer["scores"]) == 5 and all(0 < s < 1 for s in answer["scores"])


def test_open_inference_protocol_json(server: str) -> None:
    meta = httpx.get(server + "/v2/models/linear").json()
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    with Client(server) as client:
        out = client.infer("linear", {"x": x})
    np.testing.assert_allclose(out["y"], x @ WEIGHTS, rtol=1e-6)


def test_tritonclient_round_trip_with_binary_tensors(server: str) -> None:
    http = pytest.importorskip("tritonclient.http")
    client = http.InferenceServerClient(server.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("linear")
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    tensor = http.InferInput("x", [3, 4], "FP32")
    tensor.set_data_from_numpy(x)  # binary by default
    result = client.infer("linear", [tensor])
    np.testing.assert_allclose(result.as_numpy("y"), x @ WEIGHTS, rtol=1e-5)
    assert client.get_model_metadata("linear")["outputs"][0]["name"] == "y"
    client.close()


BAD_RANK = [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"candidates": []}', "candidates"),
    (b'{"candidates": [{"I1": "high"}]}', "I1"),
    (b'{"candidates": [{"I1": NaN}]}', "not valid JSON"),
    (b'{"candidates": [{"I1": 1}], "timeout_ms": -5}', "timeout_ms"),
    (b'{"candidates": [{"I1": 1}], "model": "nope"}', "unknown model"),
]


@pytest.mark.parametrize(("body", "named"), BAD_RANK)
def test_bad_rank_requests_get_4xx_naming_the_problem(server: str, body: bytes,
                                                      named: str) -> None:
    r = httpx.post(server + "/v1/rank", content=body)
    assert 400 <= r.status_code < 500, r.text
    assert named in r.json()["error"]


BAD_INFER = [
    ({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [1, 2]}]}, "needs 8"),
    ({"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [0] * 6}]}, "axis 1"),
    ({"inputs": [{"name": "z", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}]}, "'z'"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP99", "data": [0] * 4}]}, "FP99"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "BYTES", "data": ["a"] * 4}]},
     "BYTES"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                  "data": [1, 2, 1e308 * 10, 4]}]}, "infinity"),
]


@pytest.mark.parametrize(("body", "named"), BAD_INFER)
def test_bad_tensors_get_400(server: str, body: dict[str, object], named: str) -> None:
    raw = json.dumps(body).replace("Infinity", "1e999").encode()  # JSON has no infinity
    r = httpx.post(server + "/v2/models/linear/infer", content=raw)
    assert r.status_code == 400, r.text
    assert named in r.json()["error"]


def test_nan_in_a_binary_tensor_is_refused(server: str) -> None:
    head = (b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32",'
            b'"parameters":{"binary_data_size":16}}]}')
    data = np.array([[1, np.nan, 2, 3]], dtype=np.float32).tobytes()
    r = httpx.post(server + "/v2/models/linear/infer", content=head + data,
                   headers={"Inference-Header-Content-Length": str(len(head))})
    assert r.status_code == 400 and "NaN" in r.json()["error"]


def test_lying_binary_lengths_are_refused(server: str) -> None:
    head = (b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32",'
            b'"parameters":{"binary_data_size":16}}]}')
    url = server + "/v2/models/linear/infer"
    for header, tail, named in [(str(len(head) + 50), b"\0" * 16, "Inference-Header"),
                                (str(len(head)), b"\0" * 8, "binary_data_size"),
                                (str(len(head)), b"\0" * 20, "add up to"),
                                ("abc", b"", "not a number")]:
        r = httpx.post(url, content=head + tail,
                       headers={"Inference-Header-Content-Length": header})
        assert r.status_code == 400, r.text
        assert named in r.json()["error"]


def test_body_over_limit_is_413_and_unknowns_are_404(server: str) -> None:
    r = httpx.post(server + "/v1/rank", content=b"x" * (65 * 1024))
    assert r.status_code == 413 and "limit" in r.json()["error"]
    assert httpx.get(server + "/v2/models/nope").status_code == 404
    assert httpx.get(server + "/v2/models/linear/versions/9").status_code == 404
    assert httpx.get(server + "/v9/what").status_code == 404
    with Client(server) as client, pytest.raises(NotFoundError):
        client.infer("nope", {"x": np.zeros((1, 4), dtype=np.float32)})
    with Client(server) as client, pytest.raises(InputError, match="query"):
        client.request("POST", "/v1/search", {"query": "", "model": "ctr"})


def test_admin_needs_the_token(server: str) -> None:
    assert httpx.get(server + "/admin/status").status_code == 401
    bad = httpx.get(server + "/admin/status", headers={"Authorization": "Bearer wrong"})
    assert bad.status_code == 401
    with Client(server, admin_token=TOKEN) as client:
        status = client.admin("status")
    assert [r["state"] for r in status["replicas"]] == ["ready", "ready"]


def test_metrics_are_summed_over_replicas_and_no_replica_died(server: str) -> None:
    with Client(server, admin_token=TOKEN) as client:
        pids = [r["pid"] for r in client.admin("status")["replicas"]]
        for i in range(20):
            client.rank([ctr_row(i + 100)])
        text = httpx.get(server + "/metrics").text
        assert "shopserve_batch_size_bucket" in text
        assert 'shopserve_requests' in text or 'shopserve_request_seconds' in text
        assert [r["pid"] for r in client.admin("status")["replicas"]] == pids


def test_recommend_answers_k_items_and_excludes(server: str) -> None:
    with Client(server) as client:
        answer = client.recommend(None, k=5)
        assert answer["model"] == "rec" and answer["version"] == 1
        assert len(answer["items"]) == 5 and all(i["title"] for i in answer["items"])
        first = answer["items"][0]["product_id"]
        again = client.recommend(None, k=5, context={"exclude": [first]})
    assert first not in [i["product_id"] for i in again["items"]]
    r = httpx.post(server + "/v1/recommend", json={"customer": 7, "k": 5})
    assert r.status_code == 400 and "customer" in r.json()["error"]
    r = httpx.post(server + "/v1/recommend", json={"customer": None, "k": 0})
    assert r.status_code == 400 and "'k'" in r.json()["error"]


def test_search_on_a_model_of_another_kind_is_a_400(server: str) -> None:
    r = httpx.post(server + "/v1/search", json={"query": "red shoes", "model": "ctr"})
    assert r.status_code == 400 and "search model" in r.json()["error"]
    r = httpx.post(server + "/v1/search", json={"query": "x" * 5000, "model": "ctr"})
    assert r.status_code == 400 and "at most" in r.json()["error"]


def test_popular_items_answer_when_the_deadline_passes(server: str) -> None:
    with Client(server) as client:
        answer = client.recommend("someone-new", k=2, timeout_ms=0.001)  # passes before it runs
    assert answer["fallback"] is True and answer["fallback_source"] == "popular"
    assert [i["product_id"] for i in answer["items"]] == ["p-a", "p-b"]


def test_full_queue_is_refused_fast_with_retry_after(server: str) -> None:
    async def burst() -> list[httpx.Response]:
        body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                            "data": [1, 2, 3, 4]}]}
        async with httpx.AsyncClient(base_url=server) as client:
            return await asyncio.gather(*(client.post("/v2/models/tight/infer", json=body)
                                          for _ in range(8)))
    responses = asyncio.run(burst())
    codes = sorted(r.status_code for r in responses)
    assert 200 in codes and 429 in codes, codes
    refused = next(r for r in responses if r.status_code == 429)
    assert int(refused.headers["Retry-After"]) >= 1 and "queue full" in refused.json()["error"]


def test_shadow_is_compared_but_never_answers(server: str) -> None:
    with Client(server) as client:
        answers = [client.rank([ctr_row(i + 500)]) for i in range(10)]
    assert {a["version"] for a in answers} == {1}
    pattern = r'shopserve_shadow_total\{model="ctr",result="(same|different)"\} ([0-9.]+)'
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        compared = sum(float(v) for _, v in re.findall(pattern, httpx.get(
            server + "/metrics").text))
        if compared >= 10:
            break
        time.sleep(0.1)
    assert compared >= 10


def test_async_client(server: str) -> None:
    async def call() -> dict[str, object]:
        async with AsyncClient(server) as client:
            return await client.rank([ctr_row(2)])
    assert asyncio.run(call())["fallback"] is False
