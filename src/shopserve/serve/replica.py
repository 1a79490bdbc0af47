"""One replica process: load and warm every model, then serve on the sockets it was handed.

Started by the supervisor with two inherited sockets: its slot's shared port and a private
loopback port for health checks. It drains and exits on SIGTERM, and exits if orphaned.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from shopserve.serve.dataplane import DataPlane
from shopserve.serve.http import ServingApp, build_app, guarded
from shopserve.serve.protocol import deadline_protocol
from shopserve.serve.routes import ProtocolRoutes
from shopserve.serve.spec import DeploymentSpec
from shopserve.serve.state import ControlState

log = logging.getLogger("shopserve.serve.replica")


def make_app(plane: DataPlane, state_path: Path | None) -> ServingApp:
    from shopserve.monitor.buffer import flush, flush_periodically
    from shopserve.monitor.web import monitor_routes, running

    run_dir = state_path.parent if state_path else Path(tempfile.mkdtemp(prefix="shopserve-"))
    extra, monitor = monitor_routes(plane, run_dir, guarded)  # /v1/feedback, /dashboard
    plane.on_answer = monitor.answered
    protocol = ProtocolRoutes(plane)
    app = build_app(plane, protocol.routes() + extra, protocol.lane_routes())

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        task = loop.create_task(_watch(plane, state_path))
        flusher = loop.create_task(flush_periodically())  # buffered metrics to /metrics
        plane.admission.start(loop, plane.spec.server.max_loop_lag_ms)  # the limit follows lag
        async with running(monitor):
            yield
        task.cancel()
        flusher.cancel()
        plane.admission.stop()
        await plane.close()
        flush()  # the last counts of a draining replica

    app.router.lifespan_context = lifespan
    return app


async def _watch(plane: DataPlane, state_path: Path | None) -> None:
    """Apply canary weights the supervisor writes, and leave if the supervisor is gone."""
    parent = os.getppid()
    seen = 0.0
    while True:
        await asyncio.sleep(0.25)
        if os.getppid() != parent:
            log.error("supervisor %d is gone; replica %d exits", parent, os.getpid())
            os._exit(1)
        if state_path is None:
            continue
        try:
            mtime = state_path.stat().st_mtime
        except FileNotFoundError:
            continue
        if mtime != seen:
            seen = mtime
            ControlState.read(state_path).apply_weights(plane)


def serve(spec: DeploymentSpec, sockets: list[socket.socket], state_path: Path | None) -> None:
    state = ControlState.read(state_path) if state_path else ControlState()
    plane = DataPlane.load(spec, state.refs)
    state.apply_weights(plane)
    plane.warm_up()
    # everything loaded so far lives as long as the process: keep it out of the collector's
    # full passes, which otherwise walk every model and library object (tail latency)
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)  # requests make short-lived garbage; collect it in bulk
    app = make_app(plane, state_path)
    config = uvicorn.Config(
        app, loop="uvloop", access_log=False,
        http=deadline_protocol(spec.server.request_timeout_s, spec.server.max_head_bytes,
                               plane.admission, app.lane),
        log_level="warning", timeout_graceful_shutdown=int(spec.health.drain_timeout_s),
        timeout_keep_alive=spec.server.idle_timeout_s, backlog=2048, proxy_headers=False,
        server_header=False, ssl_certfile=spec.server.tls_cert, ssl_keyfile=spec.server.tls_key)
    # Server.run, not asyncio.run(serve()): only run() installs the uvloop event loop
    uvicorn.Server(config).run(sockets=sockets)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shopserve-replica")
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--state", type=Path)
    parser.add_argument("--fd", type=int, action="append", required=True)
    args = parser.parse_args(argv)
    from shopserve.monitor.logs import configure_json_logging

    configure_json_logging("replica")
    spec = DeploymentSpec.model_validate_json(args.spec.read_text(encoding="utf-8"))
    # socket(fileno=) keeps the TCP family, so uvloop sets TCP_NODELAY on each connection.
    serve(spec, [socket.socket(fileno=fd) for fd in args.fd], args.state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
