"""Per-request monitoring: the request id (``X-Request-ID``, the client's when it sent a valid
one), request counts and end-to-end latency, a JSON log line for failed or slow requests, and
the request's span when tracing is on (``tracing.py``).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from shopserve.monitor import metrics, tracing
from shopserve.monitor.settings import MonitorSettings, RequestLog, monitor_settings

HEADER = "x-request-id"
_HEADER_BYTES = HEADER.encode()
VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
log = logging.getLogger("shopserve.requests")


@dataclass(slots=True)
class RequestRecord:
    """What is known about the request being answered (filled in by the data plane)."""

    id: str
    model: str = ""
    version: str = ""
    answer: Any = None  # the data plane's Answer (fallback, cached), when there was one
    span: Any = None  # its OpenTelemetry span, when tracing is on


CURRENT: ContextVar[RequestRecord | None] = ContextVar("shopserve_request", default=None)
_settings: MonitorSettings | None = None


def settings() -> MonitorSettings:
    global _settings
    if _settings is None:
        _settings = monitor_settings()
    return _settings


_ID_PREFIX = os.urandom(6).hex()  # random per process: ids stay unique across replicas
_ids = itertools.count(1)


def new_id() -> str:
    """24 hex digits: the process's random prefix and a counter (no syscall per request)."""
    return f"{_ID_PREFIX}{next(_ids):012x}"


def reseed() -> None:
    """A new prefix for a forked process, so that it never repeats its parent's ids."""
    global _ID_PREFIX, _ids
    _ID_PREFIX, _ids = os.urandom(6).hex(), itertools.count(1)


os.register_at_fork(after_in_child=reseed)


def begin(raw_headers: list[tuple[bytes, bytes]]) -> RequestRecord:
    """Start a request: its id is the client's ``X-Request-ID`` when valid, else a new one.

    ``raw_headers`` is the ASGI scope's list (lower-case names): scanning it is cheaper than
    building Starlette's ``Headers`` for one lookup.
    """
    given = None
    for name, value in raw_headers:
        if name == _HEADER_BYTES:
            given = value.decode("latin-1")
            break
    record = RequestRecord(given if given and VALID_ID.match(given) else new_id())
    tracer = tracing.ACTIVE
    if tracer is not None:
        record.span = tracer.begin(raw_headers)
    CURRENT.set(record)
    return record


def finish(record: RequestRecord, endpoint: str, model: str, response: Any,
           seconds: float) -> None:
    """Count and time the request, return its id in a header, and log it when it failed."""
    # the raw header list: Starlette's MutableHeaders rebuilds its view on every assignment
    response.raw_headers.append((b"x-request-id", record.id.encode("latin-1")))
    status = response.status_code
    metrics.requests(endpoint, record.model or model, record.version, status).inc()
    metrics.duration(endpoint, record.model or model).observe(seconds)
    if record.span is not None and tracing.ACTIVE is not None:
        tracing.ACTIVE.finish(record, endpoint, model, status)
    mode = settings().request_log
    if mode is RequestLog.OFF:
        return
    slow = seconds * 1000 >= settings().slow_request_ms
    if mode is RequestLog.ALL or status >= 400 or slow:
        level = logging.ERROR if status >= 500 else logging.WARNING if status >= 400 or slow \
            else logging.INFO
        log.log(level, "request", extra={"fields": {
            "endpoint": endpoint, "model": record.model or model, "version": record.version,
            "status": status, "duration_ms": round(seconds * 1000, 3), "slow": slow}})
