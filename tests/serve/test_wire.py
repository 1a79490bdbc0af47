"""HTTP/1.1 on the wire for the domain routes: every way a client may send a request (one read,
pieces, pipelined, chunked, HTTP/1.0, a query string) gets the same answer, in order.

Most requests are answered by the protocol's fast lane and the rest by the ASGI way
(``serve/protocol.py``); a client must not be able to tell which.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from http_wire import parse_response, read_response
from serve_models import ctr_row

from shopserve.testing import ShopserveProcess


@pytest.fixture(scope="module")
def server(serve_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    spec = {"home": str(serve_home), "replicas": 1, "server": {"max_in_flight": 2},
            "models": [{"ref": "ctr@production", "cache": False}]}
    with ShopserveProcess.from_spec(spec, tmp_path_factory.mktemp("wire")) as proc:
        yield proc.url


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def request(body: bytes, path: str = "/v1/rank", version: str = "1.1",
            extra: bytes = b"") -> bytes:
    return (f"POST {path} HTTP/{version}\r\nHost: x\r\nContent-Type: application/json\r\n"
            .encode() + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body)


def read_answer(sock: socket.socket, buffered: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One response from ``sock``, keeping bytes of the next one in ``buffered``."""
    return parse_response(read_response(sock, buffered))


def body(i: int) -> bytes:
    return orjson.dumps({"candidates": [ctr_row(i)]})


def expected(url: str, i: int) -> list[float]:
    scores: list[float] = httpx.post(url + "/v1/rank", content=body(i)).json()["scores"]
    return scores


def test_pipelined_requests_are_answered_in_order(server: str) -> None:
    with connect(server) as sock:
        sock.sendall(b"".join(request(body(i)) for i in range(6)))
        buffered = bytearray()
        answers = [read_answer(sock, buffered) for _ in range(6)]
    assert [status for status, _, _ in answers] == [200] * 6
    assert [orjson.loads(b)["scores"] for _, _, b in answers] == [expected(server, i)
                                                                   for i in range(6)]
    ids = {h["x-request-id"] for _, h, _ in answers}
    assert len(ids) == 6


def test_a_body_in_pieces_a_chunked_body_and_a_query_string_get_the_same_answer(
        server: str) -> None:
    want = expected(server, 7)
    with connect(server) as sock:
        raw = request(body(7))
        for i in range(0, len(raw), 9):  # head and body a few bytes at a time
            sock.sendall(raw[i:i + 9])
            time.sleep(0.002)
        buffered = bytearray()
        status, headers, answer = read_answer(sock, buffered)
        assert status == 200 and orjson.loads(answer)["scores"] == want
        assert headers["content-type"] == "application/json" and "date" in headers

        data = body(7)
        sock.sendall(b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
        status, _, answer = read_answer(sock, buffered)
        assert status == 200 and orjson.loads(answer)["scores"] == want

        sock.sendall(request(body(7), path="/v1/rank?debug=1"))
        status, _, answer = read_answer(sock, buffered)
        assert status == 200 and orjson.loads(answer)["scores"] == want


def test_http_1_0_and_connection_close_are_answered_then_closed(server: str) -> None:
    for raw in (request(body(3), version="1.0"), request(body(3), extra=b"Connection: close\r\n")):
        with connect(server) as sock:
            sock.sendall(raw)
            buffered = bytearray()
            status, headers, answer = read_answer(sock, buffered)
            assert status == 200 and "scores" in orjson.loads(answer)
            assert headers.get("connection") == "close"
            assert sock.recv(100) == b""  # closed by the server


def test_bad_bodies_get_4xx_with_a_request_id_and_the_connection_stays_usable(
        server: str) -> None:
    with connect(server) as sock:
        buffered = bytearray()
        for bad, why in ((b"{not json", "not valid JSON"), (b"[1, 2]", "JSON object"),
                         (b'{"candidates": []}', "non-empty list")):
            sock.sendall(request(bad, extra=b"X-Request-ID: client-id-1\r\n"))
            status, headers, answer = read_answer(sock, buffered)
            assert status == 400, answer
            assert why in orjson.loads(answer)["error"]
            assert headers["x-request-id"] == "client-id-1"
        sock.sendall(request(body(1)))
        assert read_answer(sock, buffered)[0] == 200


def test_clients_that_leave_mid_body_give_their_slot_back(server: str) -> None:
    data = body(2)
    for _ in range(5):  # more than max_in_flight (2): leaked slots would refuse what follows
        with connect(server) as sock:
            sock.sendall(request(data)[:-5])
            time.sleep(0.05)
    time.sleep(0.2)
    with httpx.Client(base_url=server, timeout=5) as client:
        statuses = [client.post("/v1/rank", content=data).status_code for _ in range(5)]
    assert statuses == [200] * 5
    text = httpx.get(server + "/metrics").text
    assert not re.search(r'shopserve_rejected_total\{model="",reason="in_flight"\} [1-9]', text)
