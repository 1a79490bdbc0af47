"""Admission at a replica's HTTP entry: at most ``limit`` inference requests in flight; the
next one gets 429 with Retry-After at once, before its body is read or parsed (by the HTTP
protocol when its head arrives, so a refusal costs no ASGI task; ``protocol.py``).

``limit`` adapts to the replica's event-loop lag (``start``): a timer in the replica's loop
measures how late it fires. While refusing, a lag over ``server.max_loop_lag_ms`` halves the
limit (down to 1) at most every ``DECREASE_EVERY_S``; a lag under half of it raises the limit
by one at most every ``INCREASE_EVERY_S``, up to ``server.max_in_flight``. A refusal waits for
the loop's current round, so fewer admitted requests in flight keep the rounds, and refusals,
short (docs/drills.md, overload). At normal load the limit stays ``max_in_flight``; a request
still costs one compare, the timer runs beside the requests.

Requests that pile up as in-flight HTTP requests never reach a batcher's row limit
(``queue_limit``), so that limit alone did not shed load (docs/drills.md, overload). The same
counts tell the batchers whether more rows are on their way (``more_coming``).
"""

from __future__ import annotations

import asyncio
import time

import orjson
from starlette.types import Send

from shopserve.monitor import metrics as monitor_metrics
from shopserve.serve import metrics

RETRY_AFTER_S = 1  # whole seconds (the header's unit); the client's retry finds a free slot
ADMITTED_PREFIXES = ("/v1/", "/v2/models/")  # inference and feedback; never health or metrics
TICK_S = 0.002  # the lag timer's period while the replica refuses or runs below its limit
CALM_TICK_S = 0.025  # ... and while it admits everything at its full limit (idle or normal load)
DECREASE_EVERY_S = 0.010  # a halved limit shows in the lag once the requests over it are answered
INCREASE_EVERY_S = 0.005
DECREASE = 0.5


class AdmissionPolicy:
    """In-flight inference requests of one replica, and how many of them sit in a batcher."""

    __slots__ = ("_body", "_decrease_at", "_due", "_headers", "_increase_at",
                 "_loop", "_refused_seen", "_start", "_timer", "connections", "in_flight", "lag",
                 "limit", "max_lag_s", "max_limit", "queued", "refused")

    def __init__(self, limit: int) -> None:
        self.limit = limit  # the effective limit: ``max_limit``, lowered while the loop lags
        self.max_limit = limit
        self.max_lag_s: float | None = None  # None: a fixed limit (``start`` sets it)
        self.in_flight = 0  # admitted requests not yet answered
        self.queued = 0  # of them (and shadow calls): submitted to a batcher, not yet back
        # open connections that have sent an inference request, counted by the HTTP protocol
        # (None: not counted; every connection may send more). Health checks and scrapes never
        # count: they send no rows
        self.connections: int | None = None
        self.refused = 0  # requests refused by this replica, ever
        self.lag = 0.0  # seconds the last tick of the lag timer fired late
        self._refused_seen = 0
        self._decrease_at = self._increase_at = 0.0
        self._due = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._body = orjson.dumps({
            "error": f"overloaded: this replica's in-flight limit ({limit} requests, fewer "
                     f"while its event loop lags) is reached; retry after {RETRY_AFTER_S} s",
            "type": "OverloadedError"})
        self._headers = [(b"content-type", b"application/json"),
                         (b"content-length", str(len(self._body)).encode()),
                         (b"retry-after", str(RETRY_AFTER_S).encode())]
        self._start = {"type": "http.response.start", "status": 429, "headers": self._headers}

    def admit(self) -> bool:
        """Take a slot (True), or False when ``limit`` requests are in flight already."""
        if self.in_flight >= self.limit:
            return False
        self.in_flight += 1
        return True

    def _count(self, path: str) -> None:
        self.refused += 1
        endpoint = path[4:] if path.startswith("/v1/") else "/v2/models/{name}/infer"
        monitor_metrics.requests(endpoint, "", "", 429).inc()
        metrics.rejected("", "in_flight").inc()

    def release(self) -> None:
        self.in_flight -= 1

    def full(self, path: str) -> bool:
        """Whether a request for ``path`` would be refused now."""
        return self.in_flight >= self.limit and path.startswith(ADMITTED_PREFIXES)

    def refusal(self, path: str, keep_alive: bool) -> bytes:
        """The whole 429 response on the wire, counted (for the HTTP protocol itself)."""
        self._count(path)
        head = b"HTTP/1.1 429 Too Many Requests\r\n" + b"".join(
            name + b": " + value + b"\r\n" for name, value in self._headers)
        return head + (b"" if keep_alive else b"connection: close\r\n") + b"\r\n" + self._body

    def more_coming(self) -> bool:
        """Whether an admitted request has not reached a batcher yet (being read or parsed)."""
        return self.in_flight > self.queued

    def connection_opened(self) -> None:
        """A connection sent its first inference request (the HTTP protocol counts them)."""
        self.connections = (self.connections or 0) + 1

    def connection_closed(self) -> None:
        """A connection counted by ``connection_opened`` closed."""
        assert self.connections is not None
        self.connections -= 1

    def idle_connection(self) -> bool:
        """Whether a connection has no request in flight, so its next one may be in the socket
        buffer (always, when connections are not counted). When every connection has one
        (HTTP/1.1: one at a time), none can come until they are answered."""
        return self.connections is None or self.connections > self.in_flight

    async def refuse(self, path: str, send: Send) -> None:
        """The 429, counted; the request's body is never read."""
        self._count(path)
        await send(self._start)
        await send({"type": "http.response.body", "body": self._body})

    def adapt(self, lag: float, now: float) -> None:
        """One step of the controller: ``lag`` seconds the loop was late at ``now`` (seconds
        on any monotonic clock). Halve the limit when the loop lags while requests are being
        refused; add one when it does not lag."""
        assert self.max_lag_s is not None
        refusing = self.refused != self._refused_seen
        self._refused_seen = self.refused
        if lag > self.max_lag_s:
            if refusing and self.limit > 1 and now >= self._decrease_at:
                self.limit = max(1, int(self.limit * DECREASE))
                self._decrease_at = now + DECREASE_EVERY_S
                self._increase_at = now + INCREASE_EVERY_S
        elif (lag < self.max_lag_s / 2 and self.limit < self.max_limit
              and now >= self._increase_at):
            self.limit += 1
            self._increase_at = now + INCREASE_EVERY_S

    def start(self, loop: asyncio.AbstractEventLoop, max_lag_ms: float | None) -> None:
        """Adapt the limit to the lag of ``loop`` (the replica's) until ``stop``; with
        ``max_lag_ms`` None the limit stays fixed."""
        metrics.ADMISSION_LIMIT.set(self.limit)
        if max_lag_ms is None or self._timer is not None:
            return
        self.max_lag_s = max_lag_ms / 1000
        self._loop = loop
        self._schedule(time.monotonic(), CALM_TICK_S)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.limit = self.max_limit

    def _schedule(self, now: float, period: float) -> None:
        assert self._loop is not None
        self._due = now + period
        self._timer = self._loop.call_later(period, self._tick)

    def _tick(self) -> None:
        now = time.monotonic()
        self.lag = lag = max(0.0, now - self._due)
        metrics.loop_lag().observe(lag)
        before = self.limit
        self.adapt(lag, now)
        if self.limit != before:  # a change (a few a second while overloaded, none at rest)
            metrics.ADMISSION_LIMIT.set(self.limit)
        calm = self.limit == self.max_limit and self.in_flight < self.limit
        self._schedule(now, CALM_TICK_S if calm else TICK_S)
