"""The supervisor's stand-in on the shared port while no replica is ready: 503 + Retry-After.

Replica slot sockets join the port's ``SO_REUSEPORT`` group only when their replica listens,
after warm-up; with none listening, connections would be refused. This tiny responder joins the
group instead and answers every request 503 at once, so clients back off instead of failing hard.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from typing import cast

import orjson

HEAD_LIMIT = 64 * 1024  # bytes of request head read before answering anyway
HEAD_TIMEOUT_S = 5.0


def response(retry_after_s: int, message: str) -> bytes:
    body = orjson.dumps({"error": message, "type": "UnavailableError"})
    return (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            b"retry-after: %d\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s"
            % (retry_after_s, len(body), body))


class _Answer(asyncio.Protocol):
    """Reads one request head (bounded in size and time), answers 503, closes."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.head = b""
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.timer = asyncio.get_running_loop().call_later(HEAD_TIMEOUT_S,
                                                                  self.transport.close)

    def data_received(self, data: bytes) -> None:
        self.head += data
        if b"\r\n\r\n" in self.head or len(self.head) > HEAD_LIMIT:
            self._answer()

    def eof_received(self) -> bool | None:
        self._answer()
        return None

    def _answer(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.payload)
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()


class UnavailableResponder:
    """Joins the shared port while on; ``set(True/False)`` turns it on and off."""

    def __init__(self, host: str, port: int, retry_after_s: int = 1,
                 tls: ssl.SSLContext | None = None) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.payload = response(retry_after_s, "no replica is ready to answer (starting or "
                                               f"restarting); retry after {retry_after_s} s")
        self.server: asyncio.Server | None = None

    @property
    def on(self) -> bool:
        return self.server is not None

    async def set(self, on: bool) -> None:
        if on and self.server is None:
            sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.host, self.port))
            self.server = await asyncio.get_running_loop().create_server(
                lambda: _Answer(self.payload), sock=sock, backlog=1024, ssl=self.tls)
        elif not on and self.server is not None:
            server, self.server = self.server, None
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
