"""OpenTelemetry tracing of a real replica, exported over OTLP/HTTP to a receiver in the test."""

from __future__ import annotations

import gzip
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import eval_like_rows
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from shopserve.testing import ShopserveProcess

SPAN_KIND_SERVER, STATUS_ERROR = 2, 2


class OtlpReceiver(ThreadingHTTPServer):
    """``POST /v1/traces`` (protobuf), every span kept as a dict."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def wait(self, check: Any, timeout_s: float = 10.0, count: int = 1) -> list[dict[str, Any]]:
        """The spans that pass ``check``, once there are ``count`` (or the time is up)."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self.lock:
                found = [s for s in self.spans if check(s)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


def _value(v: Any) -> Any:
    return getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None


class _Handler(BaseHTTPRequestHandler):
    server: OtlpReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest.FromString(body)
        spans = []
        for rs in request.resource_spans:
            resource = {a.key: _value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    spans.append({
                        "name": s.name, "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                        "parent": s.parent_span_id.hex(), "kind": s.kind,
                        "status": s.status.code, "resource": resource,
                        "attributes": {a.key: _value(a.value) for a in s.attributes},
                        "links": [{"trace_id": link.trace_id.hex(),
                                   "span_id": link.span_id.hex(),
                                   "attributes": {a.key: _value(a.value)
                                                  for a in link.attributes}}
                                  for link in s.links]})
        with self.server.lock:
            self.server.spans.extend(spans)
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def spec(home: Path) -> dict[str, Any]:
    # a 50 ms batching delay, so that requests sent together are answered by one model call
    return {"home": str(home), "replicas": 1,
            "models": [{"ref": "ctr@1", "name": "ctr",
                        "batching": {"max_batch_size": 64, "max_queue_delay_ms": 50}}]}


def otel_env(receiver: OtlpReceiver, **extra: str) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_SERVICE_NAME": "shop-ranker", **extra}


@pytest.fixture(scope="module")
def traced(monitor_home: Path, receiver: OtlpReceiver,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShopserveProcess]:
    env = otel_env(receiver, SHOPSERVE_TRACING="1",
                   OTEL_TRACES_SAMPLER="parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG="1")
    with ShopserveProcess.from_spec(spec(monitor_home), tmp_path_factory.mktemp("traced"),
                                    env=env) as proc:
        yield proc


def traceparent(sampled: bool = True) -> tuple[str, str, str]:
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, parent, f"00-{trace_id}-{parent}-{'01' if sampled else '00'}"


def rank(url: str, rows: list[dict[str, Any]], **headers: str) -> httpx.Response:
    return httpx.post(url + "/v1/rank", json={"model": "ctr", "candidates": rows},
                      headers=headers, timeout=10)


def test_request_spans_continue_the_callers_trace(traced: ShopserveProcess,
                                                  receiver: OtlpReceiver) -> None:
    trace_id, parent, header = traceparent()
    rows = eval_like_rows(3, seed=31)
    answer = rank(traced.url, rows, traceparent=header)
    assert answer.status_code == 200
    rid = answer.headers["X-Request-ID"]
    (span,) = receiver.wait(lambda s: s["trace_id"] == trace_id and s["kind"] == SPAN_KIND_SERVER)
    assert span["name"] == "POST /v1/rank" and span["parent"] == parent
    attrs = span["attributes"]
    assert attrs["shopserve.request_id"] == rid
    assert attrs["http.response.status_code"] == 200 and attrs["http.route"] == "/v1/rank"
    assert (attrs["shopserve.model"], attrs["shopserve.version"]) == ("ctr", "1")
    assert attrs["shopserve.cached"] is False and attrs["shopserve.fallback"] is False
    assert span["resource"]["service.name"] == "shop-ranker"

    # the same rows again come from the cache; the span says so
    _, _, again = traceparent()
    cached = rank(traced.url, rows, traceparent=again)
    assert cached.json()["cached"] is True
    (hit,) = receiver.wait(lambda s: s["attributes"].get("shopserve.request_id")
                           == cached.headers["X-Request-ID"])
    assert hit["attributes"]["shopserve.cached"] is True

    # no traceparent: a new trace (the sampler's ratio is 1 here), the client's request id
    fresh = rank(traced.url, eval_like_rows(1, seed=32), **{"X-Request-ID": "order-7.trace"})
    (root,) = receiver.wait(lambda s: s["attributes"].get("shopserve.request_id")
                            == "order-7.trace")
    assert root["parent"] == "" and root["trace_id"] not in (trace_id, "0" * 32)
    assert fresh.headers["X-Request-ID"] == "order-7.trace"

    # a caller that did not sample its trace: parent-based, so no span; a 400 is no error
    unsampled_id, _, unsampled = traceparent(sampled=False)
    assert rank(traced.url, eval_like_rows(1, seed=33), traceparent=unsampled).status_code == 200
    bad_id, _, bad_header = traceparent()
    bad = httpx.post(traced.url + "/v1/rank", content=b"{nope",
                     headers={"traceparent": bad_header})
    assert bad.status_code == 400
    (failed,) = receiver.wait(lambda s: s["trace_id"] == bad_id)
    assert failed["attributes"]["http.response.status_code"] == 400
    assert failed["status"] != STATUS_ERROR
    # its log line (4xx are logged) names the trace to look it up in
    logged = [json.loads(line) for line in traced.output().splitlines()
              if line.startswith("{") and bad_id in line]
    assert logged and logged[0]["request_id"] == bad.headers["X-Request-ID"]
    assert logged[0]["trace_id"] == bad_id
    assert not receiver.wait(lambda s: s["trace_id"] == unsampled_id, timeout_s=0.5)
    # health checks and scrapes are never exported
    httpx.get(traced.url + "/metrics")
    assert not receiver.wait(lambda s: "health" in s["name"] or "metrics" in s["name"],
                             timeout_s=0.5)


def test_a_batch_span_links_the_requests_it_served(traced: ShopserveProcess,
                                                   receiver: OtlpReceiver) -> None:
    for attempt in range(3):  # requests sent together almost always share a model call
        calls = [traceparent() for _ in range(8)]
        barrier = threading.Barrier(len(calls))
        ids: dict[str, str] = {}

        def send(i: int, calls: list[tuple[str, str, str]] = calls,
                 barrier: threading.Barrier = barrier, ids: dict[str, str] = ids,
                 attempt: int = attempt) -> None:
            with httpx.Client(timeout=10) as client:
                rows = eval_like_rows(2, seed=100 + 10 * attempt + i)
                barrier.wait()
                r = client.post(traced.url + "/v1/rank", json={"model": "ctr", "candidates": rows},
                                headers={"traceparent": calls[i][2]})
                ids[r.headers["X-Request-ID"]] = calls[i][0]

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(calls))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        assert len(ids) == len(calls)
        ours = {trace for trace, _, _ in calls}
        assert len(receiver.wait(lambda s, ours=ours: s["trace_id"] in ours and s["kind"]
                                 == SPAN_KIND_SERVER, count=len(calls))) == len(calls)
        time.sleep(0.3)  # the batch spans of the round exported too
        batches = receiver.wait(lambda s, ours=ours: s["name"] == "batch ctr" and any(
            link["trace_id"] in ours for link in s["links"]))
        shared = [b for b in batches if len(b["links"]) >= 2]
        if shared:
            break
    assert shared, batches
    batch = shared[0]
    requests = {s["span_id"]: s for s in receiver.spans if s["kind"] == SPAN_KIND_SERVER}
    for link in batch["links"]:
        linked = requests[link["span_id"]]  # each link is a request span ...
        assert linked["trace_id"] == link["trace_id"]
        rid = link["attributes"]["shopserve.request_id"]
        assert linked["attributes"]["shopserve.request_id"] == rid  # ... the right one
        assert ids[rid] == link["trace_id"]
    attrs = batch["attributes"]
    assert (attrs["shopserve.model"], attrs["shopserve.version"]) == ("ctr", "1")
    assert attrs["shopserve.batch.rows"] == 2 * attrs["shopserve.batch.requests"]
    assert attrs["shopserve.batch.traced_requests"] == len(batch["links"])
    assert attrs["shopserve.batch.queue_wait_ms"] >= 0
    # the batch is a child of the first traced request in it, in that request's trace
    first = batch["links"][0]
    assert batch["trace_id"] == first["trace_id"] and batch["parent"] == first["span_id"]


def test_tracing_off_exports_nothing(monitor_home: Path, tmp_path: Path) -> None:
    quiet = OtlpReceiver()
    thread = threading.Thread(target=quiet.serve_forever, daemon=True)
    thread.start()
    try:
        env = otel_env(quiet, OTEL_TRACES_SAMPLER="always_on")  # everything but the switch
        with ShopserveProcess.from_spec(spec(monitor_home), tmp_path, env=env) as proc:
            for i in range(5):
                _, _, header = traceparent()
                assert rank(proc.url, eval_like_rows(1, seed=60 + i),
                            traceparent=header).status_code == 200
            time.sleep(1.0)  # ten export rounds, had there been a span
        assert quiet.spans == []
    finally:
        quiet.shutdown()
        quiet.server_close()


def blocked_opentelemetry(tmp_path: Path) -> dict[str, str]:
    """``PYTHONPATH`` with an ``opentelemetry`` that cannot be imported ahead of the real one."""
    blocked = tmp_path / "blocked" / "opentelemetry"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('opentelemetry is not installed')\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(blocked.parent),
                                                        os.environ.get("PYTHONPATH")]))}


def test_shopserve_serves_without_opentelemetry(tmp_path: Path) -> None:
    code = ("import shopserve.serve.replica, shopserve.monitor.live\n"
            "from shopserve.monitor import requests, tracing\n"
            "assert tracing.start(False) is None and tracing.context() is None\n"
            "record = requests.begin([(b'traceparent', b'00-' + b'1' * 32 + b'-' + b'2' * 16"
            " + b'-01')])\n"
            "assert record.span is None\n"
            "import sys; assert not any(m.startswith('opentelemetry') for m in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ,
                          **blocked_opentelemetry(tmp_path)}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr


def test_tracing_without_the_extra_fails_at_start(monitor_home: Path, receiver: OtlpReceiver,
                                                  tmp_path: Path) -> None:
    env = otel_env(receiver, SHOPSERVE_TRACING="1", **blocked_opentelemetry(tmp_path))
    proc = ShopserveProcess.from_spec(spec(monitor_home), tmp_path, env=env,
                                      startup_timeout_s=60)
    with pytest.raises(RuntimeError, match="before it was ready") as failed:
        proc.start()
    proc.kill()
    assert "pip install 'shopserve[tracing]'" in str(failed.value)
