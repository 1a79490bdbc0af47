"""uvicorn's httptools protocol with deadlines and size limits for what clients send.

uvicorn times out idle keep-alive connections only after a first response; a client that
connects and sends nothing, or sends its head or body a byte at a time, would hold its
connection (and the request's memory) for ever. Here every request must arrive whole within
``request_timeout_s`` of its first byte (else 408 and close), a new connection must start a
request within the keep-alive timeout, and a request head over ``max_head_bytes`` gets 431.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shopserve.serve.admission import AdmissionPolicy


def _refusal(status: bytes, message: str) -> bytes:
    body = orjson.dumps({"error": message, "type": "InputError"})
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\nconnection: close"
            b"\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))


def deadline_protocol(request_timeout_s: float, max_head_bytes: int,
                      admission: AdmissionPolicy | None = None) -> type[HttpToolsProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` with these limits; with
    ``admission``, a request past the replica's in-flight limit is refused (429) as soon as
    its head is parsed, without an ASGI task (the app checks again, for the requests that
    were admitted here while others took the last slots)."""
    late = _refusal(b"408 Request Timeout",
                    f"the request did not arrive whole within {request_timeout_s:g} s")
    large = _refusal(b"431 Request Header Fields Too Large",
                     f"the request head is over {max_head_bytes} bytes")

    class DeadlineProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None
        _head_bytes = 0
        _previous: Any = None  # the last request's cycle, still current until the head is read
        _incomplete = False  # a request has begun and not fully arrived

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            # idle until the first byte: the keep-alive timer, which data_received cancels
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_bytes = 0
            self._previous = self.cycle
            self._incomplete = True

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            # the deadline is armed only when a read leaves a request unfinished: a request
            # that arrives in one read (nearly all of them) costs no timer
            if self._incomplete and self._deadline is None and not self.transport.is_closing():
                self._deadline = self.loop.call_later(request_timeout_s, self._refuse, late)

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value))
            super().on_header(name, value)

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            path = cycle.scope["path"]
            if admission is None or not admission.full(path):
                super()._start_asgi_task(cycle, app)
                return
            # answered now; the body, if any, is discarded as it arrives (response_complete)
            self.transport.write(admission.refusal(path, cycle.keep_alive))
            cycle.response_started = cycle.response_complete = True
            cycle.message_event.set()
            if not cycle.keep_alive:
                self.transport.close()
            cycle.on_response()

        def on_message_complete(self) -> None:
            self._incomplete = False
            self._cancel()
            super().on_message_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel()
            super().connection_lost(exc)

        def _count(self, n: int) -> None:
            self._head_bytes += n
            if self._head_bytes > max_head_bytes:
                self._refuse(large)

        def _cancel(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _refuse(self, payload: bytes) -> None:
            """Answer (unless a response has started) and close; the app sees a disconnect."""
            self._cancel()
            if self.transport.is_closing():
                return
            cycle: Any = self.cycle
            if cycle is None or cycle is self._previous or not cycle.response_started:
                self.transport.write(payload)
            self.transport.close()

    return DeadlineProtocol
