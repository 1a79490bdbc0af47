"""A small, bounded HTTP/1.1 load generator: closed loop (N connections) or open loop (a rate).

Raw asyncio streams with keep-alive and pre-encoded requests, so one Python core can drive a
few thousand requests/s. Open-loop latency counts from each request's *scheduled* send time, so
a slow server cannot hide its queueing (no coordinated omission). Every run stops by itself.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from shopserve.errors import UsageError


class LoadMode(enum.StrEnum):
    CLOSED = "closed"  # `connections` clients, each sends again as soon as it has an answer
    OPEN = "open"  # requests start at a fixed rate (or at `offsets_s`), answered or not


class LoadSpec(BaseModel):
    """What to send, where, how hard and for how long."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str  # http://host:port of the service
    path: str = "/"
    bodies: tuple[bytes, ...] = Field(min_length=1)  # sent in order, cycled
    method: str = "POST"
    mode: LoadMode = LoadMode.CLOSED
    connections: int = Field(default=16, ge=1, le=4096)  # open loop: most connections opened
    rate: float | None = Field(default=None, gt=0, le=1_000_000)  # open loop: requests/s
    offsets_s: tuple[float, ...] | None = None  # open loop: send times (replay); wins over rate
    duration_s: float = Field(default=2.0, gt=0, le=3600)
    warmup_s: float = Field(default=0.0, ge=0, le=600)  # sent, but not counted
    max_requests: int | None = Field(default=None, ge=1)
    timeout_s: float = Field(default=5.0, gt=0, le=600)
    match: bytes | None = None  # count answers whose body contains these bytes

    @model_validator(mode="after")
    def _check(self) -> LoadSpec:
        parts = urlsplit(self.url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"url must look like http://host:port, got {self.url!r}")
        if self.mode is LoadMode.OPEN and self.rate is None and self.offsets_s is None:
            raise ValueError("an open-loop run needs a rate or offsets_s")
        if self.offsets_s is not None and any(
                b < a for a, b in zip(self.offsets_s, self.offsets_s[1:], strict=False)):
            raise ValueError("offsets_s must not decrease")
        return self


@dataclass(frozen=True)
class LoadReport:
    """What a run measured. Latencies in milliseconds; ``rps`` counts answered requests only."""

    mode: LoadMode
    offered_rps: float | None
    sent: int
    ok: int
    errors: dict[str, int]
    matched: int
    duration_s: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def summary(self) -> str:
        errs = f", {self.error_count} errors {dict(self.errors)}" if self.errors else ""
        return (f"{self.rps:.0f} req/s, p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, "
                f"p99.9 {self.p999_ms:.1f} ms ({self.ok} ok{errs})")

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in self.__dict__.items()}


@dataclass
class _Tally:
    counted_from: float
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    matched: int = 0

    def record(self, scheduled: float, outcome: str | None, matched: bool) -> None:
        if scheduled < self.counted_from:
            return
        self.sent += 1
        if outcome is None:
            self.latencies.append(time.perf_counter() - scheduled)
            self.matched += matched
        else:
            self.errors[outcome] += 1


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def exchange(self, request: bytes) -> tuple[int, bytes, bool]:
        """Send one request; the status, the body and whether the connection may be reused."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:] if line)}
        if "content-length" not in headers:
            raise _Framing("answer without Content-Length")
        body = await self.reader.readexactly(int(headers["content-length"]))
        return status, body, headers.get("connection", "").lower() != "close"

    def close(self) -> None:
        self.writer.close()


class _Framing(Exception):
    """An answer this client cannot frame."""


class LoadRunner:
    """Runs one ``LoadSpec``; use ``run_load`` unless you already are on an event loop."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        parts = urlsplit(spec.url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.requests = [self._encode(b) for b in spec.bodies]
        self.idle: list[_Connection] = []
        self.opened = 0
        self.slots = asyncio.Semaphore(spec.connections)

    def _encode(self, body: bytes) -> bytes:
        head = (f"{self.spec.method} {self.spec.path} HTTP/1.1\r\nHost: {self.host}:{self.port}"
                f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        return head.encode("latin-1") + body

    async def _once(self, index: int, scheduled: float, tally: _Tally) -> None:
        """One request on an idle (or new) connection, all within ``timeout_s``; never raises."""
        try:
            outcome, matched = await asyncio.wait_for(
                self._exchange(index), scheduled + self.spec.timeout_s - time.perf_counter())
        except TimeoutError:
            outcome, matched = "timeout", False
        tally.record(scheduled, outcome, matched)

    async def _exchange(self, index: int) -> tuple[str | None, bool]:
        async with self.slots:
            for reused in (True, False):  # a kept-alive connection the server closed: once more
                conn = self.idle.pop() if self.idle and reused else None
                try:
                    if conn is None:
                        conn = _Connection(*await asyncio.open_connection(self.host, self.port))
                    status, body, reuse = await conn.exchange(
                        self.requests[index % len(self.requests)])
                except (OSError, asyncio.IncompleteReadError, _Framing, ValueError,
                        IndexError):
                    if conn is not None:
                        conn.close()
                    if reused and conn is not None:
                        continue
                    return "connection", False
                except BaseException:  # cancelled by the timeout: never reuse it
                    if conn is not None:
                        conn.close()
                    raise
                if reuse:
                    self.idle.append(conn)
                else:
                    conn.close()
                matched = self.spec.match is not None and self.spec.match in body
                return (f"http {status}" if status >= 400 else None), matched
        return "connection", False

    async def run(self) -> LoadReport:
        spec = self.spec
        start = time.perf_counter()
        tally = _Tally(counted_from=start + spec.warmup_s)
        end = start + spec.warmup_s + spec.duration_s
        limit = spec.max_requests or 2**62
        if spec.mode is LoadMode.CLOSED:
            await self._closed(end, limit, tally)
        else:
            await self._open(start, end, limit, tally)
        elapsed = max(time.perf_counter() - tally.counted_from, 1e-9)
        if spec.mode is LoadMode.OPEN and spec.offsets_s is None:
            elapsed = spec.duration_s  # the rate is what was sent in that window
        for conn in self.idle:
            conn.close()
        return self._report(tally, elapsed)

    async def _closed(self, end: float, limit: int, tally: _Tally) -> None:
        counter = iter(range(limit))

        async def client() -> None:
            for index in counter:
                if time.perf_counter() >= end:
                    return
                await self._once(index, time.perf_counter(), tally)

        await asyncio.gather(*(client() for _ in range(self.spec.connections)))

    async def _open(self, start: float, end: float, limit: int, tally: _Tally) -> None:
        spec = self.spec
        offsets: Sequence[float] | None = spec.offsets_s
        tasks: set[asyncio.Task[None]] = set()
        index = 0
        while index < limit:
            if offsets is not None and index >= len(offsets):
                break
            due = offsets[index] if offsets is not None else index / (spec.rate or 1.0)
            scheduled = start + due
            if scheduled >= end and offsets is None:
                break
            wait = scheduled - time.perf_counter()
            if wait > 0.0005:
                await asyncio.sleep(wait)
            task = asyncio.get_running_loop().create_task(self._once(index, scheduled, tally))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            index += 1
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=spec.timeout_s + 1)
            for task in late:
                task.cancel()

    def _report(self, tally: _Tally, elapsed: float) -> LoadReport:
        lat = np.asarray(tally.latencies) * 1000
        pct = (np.percentile(lat, [50, 95, 99, 99.9]) if len(lat)
               else np.full(4, float("nan")))
        offered = self.spec.rate if self.spec.mode is LoadMode.OPEN else None
        if self.spec.offsets_s is not None and len(self.spec.offsets_s) > 1:
            span = self.spec.offsets_s[-1] - self.spec.offsets_s[0]
            offered = len(self.spec.offsets_s) / span if span > 0 else None
        return LoadReport(
            mode=self.spec.mode, offered_rps=offered, sent=tally.sent, ok=len(lat),
            errors=dict(tally.errors), matched=tally.matched, duration_s=round(elapsed, 3),
            rps=len(lat) / elapsed, p50_ms=float(pct[0]), p95_ms=float(pct[1]),
            p99_ms=float(pct[2]), p999_ms=float(pct[3]),
            max_ms=float(lat.max()) if len(lat) else float("nan"))


def run_load(spec: LoadSpec) -> LoadReport:
    """Run ``spec`` on a fresh event loop (uvloop when installed) and return what it measured."""
    try:
        import uvloop
    except ImportError:  # plain asyncio is slower but measures the same way
        return asyncio.run(LoadRunner(spec).run())
    return uvloop.run(LoadRunner(spec).run())


def load_spec(**values: Any) -> LoadSpec:
    """A ``LoadSpec`` from keyword values, with a ``UsageError`` naming each bad field."""
    from pydantic import ValidationError

    from shopserve.config import describe_validation_error

    try:
        return LoadSpec(**values)
    except ValidationError as exc:
        raise UsageError(describe_validation_error("load", exc)) from exc

