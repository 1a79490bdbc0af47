"""Slow and idle clients on real sockets: refused by deadline, never tying up the replica."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from http_wire import read_response
from serve_models import ctr_row

from shopserve.testing import ShopserveProcess

LIMITS = {"idle_timeout_s": 1, "request_timeout_s": 1.0, "max_head_bytes": 8192}


@pytest.fixture(scope="module")
def server(serve_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    spec = {"home": str(serve_home), "replicas": 1, "server": LIMITS,
            "models": [{"ref": "ctr@production", "cache": False}]}
    with ShopserveProcess.from_spec(spec, tmp_path_factory.mktemp("slow")) as proc:
        yield proc.url


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_silent_connection_is_closed_after_the_idle_timeout(server: str) -> None:
    with connect(server) as sock:
        started = time.monotonic()
        assert read_all(sock) == b""
        assert 0.5 < time.monotonic() - started < 4


def test_slow_heads_get_408_while_other_clients_are_answered(server: str) -> None:
    slow = [connect(server) for _ in range(30)]
    try:
        for sock in slow:
            sock.sendall(b"POST /v1/rank HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        with httpx.Client(base_url=server, timeout=2) as client:
            for i in range(20):  # the one replica is not tied up by the 30 slow clients
                r = client.post("/v1/rank", json={"candidates": [ctr_row(i)]})
                assert r.status_code == 200
                for sock in slow[:5]:  # keep trickling bytes: a slowloris, not an idle client
                    sock.sendall(b"X")
        assert time.monotonic() - started < 10
        for sock in slow:
            answer = read_all(sock)
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
            assert b"did not arrive whole within 1 s" in answer
    finally:
        for sock in slow:
            sock.close()


def test_a_body_that_stops_coming_gets_408(server: str) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"candidates\": [")
        started = time.monotonic()
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
    assert time.monotonic() - started < 4


def test_an_oversized_head_gets_431(server: str) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000
                     + b"\r\n\r\n")
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
    assert httpx.get(server + "/v2/health/live").status_code == 200


def test_a_head_over_the_limit_in_pieces_gets_431_and_a_large_one_under_it_is_answered(
        server: str) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
        for i in range(4):  # headers of 4 KB, each in its own read: > 8 KB
            time.sleep(0.05)
            sock.sendall(b"X-Part-%d: " % i + b"a" * 4000 + b"\r\n")
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
    with connect(server) as sock:  # 7 KB of head in pieces, then a body: under the limit
        body = b'{"candidates": [{"I1": 1.0, "I2": 2.0, "C1": "a"}]}'
        sock.sendall(b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 3500)
        time.sleep(0.05)
        sock.sendall(b"a" * 3500 + b"\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")


def test_a_keep_alive_connection_idle_after_its_answers_is_closed_after_the_idle_timeout(
        server: str) -> None:
    body = b'{"candidates": [{"I1": 1.0, "I2": 2.0, "C1": "a"}]}'
    rank = (b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    health = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    for request in (rank, health):  # the fast lane's answer, and the ASGI way's
        with connect(server) as sock:
            for i in range(4):  # kept open while it is used within the timeout
                if i:
                    time.sleep(0.5)
                sock.sendall(request)
                answered = read_response(sock)
                assert answered.startswith(b"HTTP/1.1 200 "), answered[:80]
            idle_from = time.monotonic()
            assert read_all(sock) == b""  # then closed by the server, 1 s after the answer
            assert 0.75 < time.monotonic() - idle_from < 3

