"""Admission at a replica's HTTP entry: at most ``limit`` inference requests in flight; the
next one gets 429 with Retry-After at once, before its body is read or parsed (by the HTTP
protocol when its head arrives, so a refusal costs no ASGI task; ``protocol.py``).

Requests that pile up as in-flight HTTP requests never reach a batcher's row limit
(``queue_limit``), so that limit alone did not shed load (docs/drills.md, overload). The same
counts tell the batchers whether more rows are on their way (``more_coming``).
"""

from __future__ import annotations

import orjson
from starlette.types import Send

from shopserve.monitor import metrics as monitor_metrics
from shopserve.serve import metrics

RETRY_AFTER_S = 1  # whole seconds (the header's unit); the client's retry finds a free slot
ADMITTED_PREFIXES = ("/v1/", "/v2/models/")  # inference and feedback; never health or metrics


class AdmissionPolicy:
    """In-flight inference requests of one replica, and how many of them sit in a batcher."""

    __slots__ = ("_body", "_headers", "_start", "in_flight", "limit", "queued")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0  # admitted requests not yet answered
        self.queued = 0  # of them (and shadow calls): submitted to a batcher, not yet back
        self._body = orjson.dumps({
            "error": f"overloaded: {limit} requests in flight on this replica; retry after "
                     f"{RETRY_AFTER_S} s", "type": "OverloadedError"})
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

    async def refuse(self, path: str, send: Send) -> None:
        """The 429, counted; the request's body is never read."""
        self._count(path)
        await send(self._start)
        await send({"type": "http.response.body", "body": self._body})
