"""uvicorn's httptools protocol with deadlines and size limits for what clients send, and the
fast lane for the domain routes.

uvicorn times out idle keep-alive connections only after a first response; a client that
connects and sends nothing, or sends its head or body a byte at a time, would hold its
connection (and the request's memory) for ever. Here every request must arrive whole within
``request_timeout_s`` of its first byte (else 408 and close), a new connection must start a
request within the keep-alive timeout, and a request head over ``max_head_bytes`` gets 431.

The fast lane: a ``POST`` to an inference route (``/v1/rank``, ``/v2/models/{name}/infer``
...) with a ``Content-Length`` body of at most 64 KiB, on a connection with no other request in
progress, is read whole by the protocol and answered by ``FastLane`` (``http.py``), whose
response is written to the socket in one call. That skips uvicorn's ASGI cycle (scope, receive
and send messages, header checks per message) and Starlette's request and response writing,
which cost more per one-row request than the model itself (docs/serving.md). Every other
request takes the ASGI way.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from shopserve.serve.admission import ADMITTED_PREFIXES, AdmissionPolicy

if TYPE_CHECKING:
    from shopserve.serve.http import FastLane, LaneRoute

log = logging.getLogger("shopserve.serve")
_ADMITTED = tuple(p.encode() for p in ADMITTED_PREFIXES)


def _refusal(status: bytes, message: str) -> bytes:
    body = orjson.dumps({"error": message, "type": "InputError"})
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\nconnection: close"
            b"\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))


class _NoEvent:
    def set(self) -> None:
        pass


class FastCycle:
    """A request taken by the fast lane, with what uvicorn's protocol reads of a request cycle
    (``connection_lost``, ``shutdown``, pipelining)."""

    __slots__ = ("admitted", "body", "disconnected", "keep_alive", "response_complete",
                 "response_started", "route", "scope")
    message_event = _NoEvent()

    def __init__(self, scope: Any, route: LaneRoute, keep_alive: bool) -> None:
        self.scope, self.route, self.keep_alive = scope, route, keep_alive
        self.body = b""
        self.admitted = self.disconnected = self.response_started = False
        self.response_complete = False


_INTERNAL = orjson.dumps({"error": "internal error; see the replica log", "type": "InternalError"})
INTERNAL = (b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_INTERNAL), _INTERNAL))


def deadline_protocol(request_timeout_s: float, max_head_bytes: int,
                      admission: AdmissionPolicy | None = None,
                      lane: FastLane | None = None) -> type[HttpToolsProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` with these limits; with
    ``admission``, a request past the replica's in-flight limit is refused (429) as soon as
    its head is parsed, without an ASGI task (the app checks again, for the requests that
    were admitted here while others took the last slots); with ``lane``, the domain routes
    take the fast lane."""
    fast_routes = lane.routes if lane is not None else {}
    fast_limit = min(lane.limit, HIGH_WATER_LIMIT) if lane is not None else 0
    late = _refusal(b"408 Request Timeout",
                    f"the request did not arrive whole within {request_timeout_s:g} s")
    large = _refusal(b"431 Request Header Fields Too Large",
                     f"the request head is over {max_head_bytes} bytes")

    class DeadlineProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None
        _head_open = False  # a request's head has begun and not fully arrived
        _head_raw = 0  # bytes of the reads that left the current head unfinished
        _read = 0  # size of the read being parsed
        _previous: Any = None  # the last request's cycle, still current until the head is read
        _incomplete = False  # a request has begun and not fully arrived
        # idle connections: since when this one waits for a request (None: it is busy). One
        # sweep of the process's connections a fraction of the keep-alive timeout closes those
        # idle too long, instead of uvicorn's timer armed and cancelled around every request
        _idle_since: float | None = None
        _rows = False  # has sent an inference request: counted in ``admission.connections``
        _sweeper: ClassVar[asyncio.Task[None] | None] = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._idle()  # idle until its first byte

        def _idle(self) -> None:
            self._idle_since = self.loop.time()
            cls = type(self)
            if cls._sweeper is None or cls._sweeper.done():
                cls._sweeper = self.loop.create_task(self._sweep(self.connections))

        async def _sweep(self, connections: set[Any]) -> None:
            """Close connections idle for the keep-alive timeout; ends when none is left."""
            timeout = self.timeout_keep_alive
            loop = self.loop
            while connections:
                await asyncio.sleep(min(1.0, max(timeout / 4, 0.05)))
                now = loop.time()
                for conn in list(connections):
                    since = getattr(conn, "_idle_since", None)
                    if since is not None and now - since >= timeout:
                        conn._idle_since = None
                        conn.timeout_keep_alive_handler()

        def on_response_complete(self) -> None:
            """uvicorn's, with the idle mark instead of a keep-alive timer per response."""
            self.server_state.total_requests += 1
            if self.transport.is_closing():
                return
            self.flow.resume_reading()
            if self.pipeline:
                cycle, app = self.pipeline.pop()
                self._start_asgi_task(cycle, app)
            else:
                self._idle()

        def on_headers_complete(self) -> None:
            self._head_open = False
            if admission is not None and not self._rows and self.url.startswith(_ADMITTED):
                self._rows = True
                admission.connection_opened()
            if (self._head_raw or self._read > max_head_bytes) and self._head_too_large():
                self._refuse(large)
                return
            route = fast_routes.get(self.url)
            if route is None or not self._fast_ready():
                super().on_headers_complete()
                return
            keep_alive = self.parser.should_keep_alive() and \
                self.parser.get_http_version() == "1.1"
            scope = self.scope
            scope["method"], scope["path"] = "POST", self.url.decode("ascii")
            cycle = FastCycle(scope, route, keep_alive)
            self.cycle = cycle  # type: ignore[assignment]
            # the slot is taken now, as on the ASGI way: a request whose body is still
            # arriving is in flight (the task answering it, or connection_lost, releases it)
            if admission is None or admission.admit():
                cycle.admitted = True
            else:
                self._refuse_admission(cycle)

        def _fast_ready(self) -> bool:
            """Whether the request whose head was just read may take the fast lane."""
            cycle: Any = self.cycle
            if (cycle is not None and not cycle.response_complete) or \
                    self.expect_100_continue or self.parser.get_method() != b"POST":
                return False  # pipelined behind another request, or a 100-continue
            length = -1
            for name, value in self.headers:
                if name == b"content-length":
                    length = int(value) if value.isdigit() else -1
                elif name == b"transfer-encoding" or name == b"upgrade":
                    return False
            return 0 <= length <= fast_limit

        def _refuse_admission(self, cycle: Any) -> None:
            """The 429 for ``cycle`` (the fast lane's or an ASGI one) now, without running
            it; the body, if any, is discarded as it arrives (``response_complete``)."""
            assert admission is not None
            self.transport.write(admission.refusal(cycle.scope["path"], cycle.keep_alive))
            cycle.response_started = cycle.response_complete = True
            cycle.message_event.set()
            if not cycle.keep_alive:
                self.transport.close()
            self.on_response_complete()

        def on_body(self, body: bytes) -> None:
            if self.transport.is_closing():  # refused (408, 431): the rest is not read
                return
            cycle: Any = self.cycle
            if type(cycle) is not FastCycle:
                super().on_body(body)
            elif not cycle.response_complete:
                cycle.body += body

        def _answer_fast(self, cycle: FastCycle) -> None:
            cycle.admitted = False  # the task releases the slot
            task = self.loop.create_task(self._fast(cycle))
            task.add_done_callback(self.tasks.discard)
            self.tasks.add(task)

        async def _fast(self, cycle: FastCycle) -> None:
            assert lane is not None
            try:
                response = await lane.answer(cycle.route, cycle.scope, cycle.body)
                head: list[Any] = [STATUS_LINE[response.status_code]]
                for name, value in self.server_state.default_headers:
                    head += (name, b": ", value, b"\r\n")
                for name, value in response.raw_headers:
                    head += (name, b": ", value, b"\r\n")
                if not cycle.keep_alive:
                    head.append(b"connection: close\r\n")
                head += (b"\r\n", response.body)
                payload = b"".join(head)
            except Exception:  # answer_guarded makes errors responses; this is a bug here
                log.exception("unexpected error writing a response")
                payload, cycle.keep_alive = INTERNAL, False
            finally:
                if admission is not None:
                    admission.release()
            if cycle.disconnected:
                return
            if self.flow.write_paused:
                await self.flow.drain()
                if cycle.disconnected:
                    return
            self.transport.write(payload)
            cycle.response_started = cycle.response_complete = True
            if not cycle.keep_alive:
                self.transport.close()
            self.on_response_complete()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_open = True
            self._head_raw = 0
            self._previous = self.cycle
            self._incomplete = True

        def data_received(self, data: bytes) -> None:
            self._idle_since = None
            self._read = len(data)
            super().data_received(data)
            if self._head_open and not self.transport.is_closing():  # the head goes on
                self._head_raw += len(data)
                if self._head_too_large():
                    self._refuse(large)
                    return
            # the deadline is armed only when a read leaves a request unfinished: a request
            # that arrives in one read (nearly all of them) costs no timer
            if self._incomplete and self._deadline is None and not self.transport.is_closing():
                self._deadline = self.loop.call_later(request_timeout_s, self._refuse, late)

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            if admission is None or not admission.full(cycle.scope["path"]):
                super()._start_asgi_task(cycle, app)
            else:
                self._refuse_admission(cycle)

        def on_message_complete(self) -> None:
            self._incomplete = False
            self._cancel()
            if self.transport.is_closing():
                return
            cycle: Any = self.cycle
            if type(cycle) is not FastCycle:
                super().on_message_complete()
            elif not cycle.response_complete:
                self._answer_fast(cycle)

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel()
            if self._rows and admission is not None:
                self._rows = False
                admission.connection_closed()
            cycle: Any = self.cycle
            if type(cycle) is FastCycle and cycle.admitted:  # its body never arrived whole
                cycle.admitted = False
                if admission is not None:
                    admission.release()
            super().connection_lost(exc)

        def _head_too_large(self) -> bool:
            """Whether the head read so far (URL and complete headers) is over the limit.

            Computed only when a head may be large: when it did not arrive in one read, or
            arrived in a read larger than the limit; a whole head in one small read (nearly
            every request) costs nothing here. ``_head_raw`` also bounds a single header that
            never ends, which the parser holds until it is complete."""
            size = len(self.url) + sum(len(n) + len(v) for n, v in self.headers)
            return size > max_head_bytes or self._head_raw > 2 * max_head_bytes + 65536

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
