"""Admission and adaptive batching on a real replica: what a caller sees under load and alone."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from pathlib import Path

import httpx
import orjson
from http_wire import read_response
from serve_models import ctr_row

from shopserve.testing import ShopserveProcess


def head(length: int) -> bytes:
    return (b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % length)


def test_requests_past_the_in_flight_limit_get_429_before_their_body_is_read(
        serve_home: Path, tmp_path: Path) -> None:
    spec = {"home": str(serve_home), "replicas": 1, "server": {"max_in_flight": 1},
            "models": [{"ref": "ctr@production", "cache": False}]}
    with ShopserveProcess.from_spec(spec, tmp_path) as server:
        port = int(server.url.rsplit(":", 1)[1])
        body = orjson.dumps({"candidates": [ctr_row(1)]})
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow, \
                socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
            slow.sendall(head(len(body)) + body[:5])  # admitted, its body still arriving
            time.sleep(0.3)
            start = time.monotonic()
            extra.sendall(head(10**6))  # a body that is never sent: it is not waited for
            refused = read_response(extra)
            took = time.monotonic() - start
            slow.sendall(body[5:])
            answered = read_response(slow)
        assert refused.startswith(b"HTTP/1.1 429") and b"retry-after: 1" in refused.lower()
        assert b"OverloadedError" in refused and took < 2.0
        assert answered.startswith(b"HTTP/1.1 200") and b'"scores"' in answered
        assert httpx.post(server.url + "/v1/rank", content=body).status_code == 200
        text = httpx.get(server.url + "/metrics").text
        assert re.search(r'shopserve_rejected_total\{model="",reason="in_flight"\} 1\.0', text)
        assert re.search(r'shopserve_requests_total\{endpoint="rank",model="",status="429",'
                         r'version=""\} 1\.0', text), text


def batch_counts(url: str) -> tuple[float, float]:
    """(batches of exactly one row, all batches) of the served CTR version, from /metrics."""
    text = httpx.get(url + "/metrics").text
    ones = re.search(r'shopserve_batch_size_bucket\{le="1\.0",model="ctr",version="1"\} (\S+)',
                     text)
    count = re.search(r'shopserve_batch_size_count\{model="ctr",version="1"\} (\S+)', text)
    assert ones and count, text
    return float(ones.group(1)), float(count.group(1))


def test_a_lone_caller_skips_the_batching_delay_and_concurrent_callers_are_batched(
        serve_home: Path, tmp_path: Path) -> None:
    spec = {"home": str(serve_home), "replicas": 1,
            "models": [{"ref": "ctr@production", "cache": False,
                        "batching": {"max_batch_size": 32, "max_queue_delay_ms": 300}}]}
    with ShopserveProcess.from_spec(spec, tmp_path) as server, \
            httpx.Client(base_url=server.url) as http:
        took = []
        for i in range(5):  # one request at a time: the model is idle when each arrives
            start = time.monotonic()
            assert http.post("/v1/rank", json={"candidates": [ctr_row(i)]}).status_code == 200
            took.append(time.monotonic() - start)
        assert max(took) < 0.15, took  # the configured delay (300 ms) was not paid
        ones_before, batches_before = batch_counts(server.url)

        async def burst() -> list[int]:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                answers = await asyncio.gather(*(
                    client.post("/v1/rank", json={"candidates": [ctr_row(i)]})
                    for i in range(48)))
            return [a.status_code for a in answers]

        assert asyncio.run(burst()) == [200] * 48
        ones, batches = batch_counts(server.url)
    assert batches - batches_before < 48  # fewer model calls than requests ...
    assert batches - batches_before > ones - ones_before  # ... some of them with several rows


def test_a_batch_does_not_wait_when_every_connection_has_its_request_in_it(
        serve_home: Path, tmp_path: Path) -> None:
    spec = {"home": str(serve_home), "replicas": 1,
            "models": [{"ref": "ctr@production", "cache": False,
                        "batching": {"max_batch_size": 32, "max_queue_delay_ms": 800}}]}

    def request(i: int) -> bytes:
        body = orjson.dumps({"candidates": [ctr_row(i)]})
        return head(len(body)) + body

    def together(conns: list[socket.socket]) -> float:
        """Seconds until every connection has its answer, when all of their requests are
        admitted before the first is complete (each waits for its last byte)."""
        for i, conn in enumerate(conns):
            conn.sendall(request(i)[:-1])
        time.sleep(0.3)  # every head read: all four admitted, none complete yet
        start = time.monotonic()
        for i, conn in enumerate(conns):
            conn.sendall(request(i)[-1:])
        assert all(read_response(conn).startswith(b"HTTP/1.1 200") for conn in conns)
        return time.monotonic() - start

    with ShopserveProcess.from_spec(spec, tmp_path) as server:
        port = int(server.url.rsplit(":", 1)[1])
        conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
        try:
            for i, conn in enumerate(conns[:4]):  # one at a time: each runs alone, at once
                conn.sendall(request(i))
                assert read_response(conn).startswith(b"HTTP/1.1 200")
            _, batches_before = batch_counts(server.url)
            # every connection's request waits in the batcher, so no other can come: the
            # batch runs at once, not after the 800 ms delay or its 200 ms quiet period
            took = [together(conns[:4]) for _ in range(3)]
            assert max(took) < 0.15, took
            _, batches = batch_counts(server.url)
            assert batches - batches_before == 3  # one model call per round
            # a fifth connection that has sent an inference request could send another: the
            # batch waits until a quarter of the delay passed with no new request
            conns[4].sendall(request(9))
            assert read_response(conns[4]).startswith(b"HTTP/1.1 200")
            assert 0.2 <= together(conns[:4]) < 0.8
        finally:
            for conn in conns:
                conn.close()
