"""The monitoring routes a replica mounts: ``POST /v1/feedback``, ``GET /dashboard`` (one
self-contained page) and ``GET /dashboard/status.json`` (what the page polls).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from shopserve.errors import InputError
from shopserve.monitor.feedback import Feedback
from shopserve.monitor.live import MonitorCollector, ReplicaMonitor
from shopserve.monitor.metrics import SCRAPE_COLLECTORS
from shopserve.monitor.status import build_status

Handler = Callable[[Request], Awaitable[Response]]
MAX_FEEDBACK_BYTES = 4096


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


class MonitorRoutes:
    def __init__(self, monitor: ReplicaMonitor) -> None:
        self.monitor = monitor
        self.page = resources.files("shopserve.monitor").joinpath("dashboard.html") \
            .read_text(encoding="utf-8")

    async def feedback(self, request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_FEEDBACK_BYTES:
            raise InputError(f"feedback body is over {MAX_FEEDBACK_BYTES} bytes")
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InputError(f"request body is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise InputError("request body must be a JSON object with 'request_id', "
                             "'product_id' and 'event'")
        item = Feedback.parse(data)
        await self.monitor.store_feedback(item)  # durable before the 200
        return _json({"stored": True, "request_id": item.request_id,
                      "product_id": item.product_id, "event": item.event})

    async def dashboard(self, request: Request) -> Response:
        return HTMLResponse(self.page)

    async def status(self, request: Request) -> Response:
        range_ = request.query_params.get("range", "5m")
        loop = asyncio.get_running_loop()
        # drift and the feedback join read files: off the event loop
        data = await loop.run_in_executor(None, build_status, self.monitor, range_)
        return _json(data)


def monitor_routes(plane: Any, run_dir: Path,
                   wrap: Callable[[str, Handler], Handler]) -> tuple[list[Route], ReplicaMonitor]:
    """The routes (each wrapped by serving's error handling ``wrap``) and the replica's monitor,
    which serving hooks into its data plane and runs in the background."""
    monitor = ReplicaMonitor(plane, run_dir)
    routes = MonitorRoutes(monitor)
    table: list[tuple[str, str, Handler, str]] = [
        ("/v1/feedback", "feedback", routes.feedback, "POST"),
        ("/dashboard", "/dashboard", routes.dashboard, "GET"),
        ("/dashboard/status.json", "/dashboard/status.json", routes.status, "GET"),
    ]
    return [Route(path, wrap(name, fn), methods=[method]) for path, name, fn, method in table], \
        monitor


@contextlib.asynccontextmanager
async def running(monitor: ReplicaMonitor) -> AsyncIterator[None]:
    """The monitor's background task and its metrics collector, for the replica's lifetime."""
    collector = MonitorCollector(monitor)
    SCRAPE_COLLECTORS.append(collector)
    task = asyncio.get_running_loop().create_task(monitor.run())
    try:
        yield
    finally:
        task.cancel()
        SCRAPE_COLLECTORS.remove(collector)
        monitor.close()

