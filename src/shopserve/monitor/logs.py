"""Structured logs: one JSON object per line, with the request id of the request being
answered (when there is one) and any ``extra={"fields": {...}}`` merged in.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson

from shopserve.monitor.requests import CURRENT


class JsonFormatter(logging.Formatter):
    def __init__(self, process: str) -> None:
        super().__init__()
        self.process_role = process

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC)
        data = {"ts": when.isoformat(timespec="milliseconds"),
                "level": record.levelname.lower(), "logger": record.name,
                "process": self.process_role, "pid": record.process,
                "message": record.getMessage()}
        current = CURRENT.get()
        if current is not None:
            data["request_id"] = current.id
            if current.span is not None:  # tracing: the trace to look the request up in
                span = current.span.get_span_context()
                if span.trace_flags.sampled:
                    data["trace_id"] = format(span.trace_id, "032x")
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            data.update(fields)
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return orjson.dumps(data, default=str).decode()


def configure_json_logging(process: str, level: int = logging.WARNING) -> None:
    """JSON lines on stderr for the whole process; request logs at INFO pass through."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(process))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("shopserve.requests").setLevel(logging.INFO)
