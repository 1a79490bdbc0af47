"""Run a whole deployment in the foreground: supervisor, replicas, control API, signals.

Prometheus' multiprocess directory must be set before prometheus-client is first imported,
so the supervisor modules are imported only inside ``serve_deployment``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING

from shopserve.serve.spec import DeploymentSpec

log = logging.getLogger("shopserve.serve")
# set by tools that start a deployment as their child (ShopserveProcess: tests, drills)
STOP_WITH_PARENT_ENV = "SHOPSERVE_STOP_WITH_PARENT"

if TYPE_CHECKING:
    import uvicorn

    from shopserve.serve.control import ControlApi


def serve_deployment(spec: DeploymentSpec, on_ready: Callable[[str], None],
                     run_dir: Path | None = None) -> None:
    """Start everything, call ``on_ready(url)``, serve until SIGINT/SIGTERM, then drain and stop."""
    own_dir = run_dir is None
    base = Path(tempfile.mkdtemp(prefix="shopserve-")) if run_dir is None else run_dir
    metrics_dir = base / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    try:
        import uvloop

        uvloop.run(_main(spec, base, on_ready))
    finally:
        if own_dir:
            shutil.rmtree(base, ignore_errors=True)


async def _main(spec: DeploymentSpec, base: Path, on_ready: Callable[[str], None]) -> None:
    import uvicorn

    from shopserve.monitor.history import record_history
    from shopserve.serve.control import ControlApi, guard_canaries
    from shopserve.serve.supervisor import Supervisor

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    orphan_watch = (loop.create_task(_stop_when_orphaned(stop))
                    if os.environ.get(STOP_WITH_PARENT_ENV) == "1" else None)
    control_sock = socket.socket()
    control_sock.bind(("127.0.0.1", 0))
    control_url = f"http://127.0.0.1:{control_sock.getsockname()[1]}"
    sup = Supervisor(spec, base, control_url)
    api = ControlApi(sup)

    class _ControlServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield  # the supervisor handles SIGINT/SIGTERM itself

    control = _ControlServer(uvicorn.Config(api.app(), log_level="warning", access_log=False,
                                            lifespan="off"))
    control_task = loop.create_task(control.serve(sockets=[control_sock]))
    admin = _admin_server(spec, api, _ControlServer)
    admin_task = loop.create_task(admin.serve()) if admin is not None else None
    start = loop.create_task(sup.start())
    stopped = loop.create_task(stop.wait())
    await asyncio.wait({start, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if start.done():
        start.result()  # raises when a replica could not start
        on_ready(f"{spec.server.scheme}://{spec.server.host}:{sup.port}")
        tasks = [loop.create_task(sup.watch()), loop.create_task(guard_canaries(api)),
                 loop.create_task(record_history(sup))]  # dashboard history, replica gauges
        await stop.wait()
        for task in tasks:
            task.cancel()
    else:
        start.cancel()
    if orphan_watch is not None:
        orphan_watch.cancel()
    await sup.stop()
    control.should_exit = True
    await control_task
    if admin is not None and admin_task is not None:
        admin.should_exit = True
        await admin_task


async def _stop_when_orphaned(stop: asyncio.Event) -> None:
    """Drain and stop when the process that started this one is gone (a test or a drill that
    was killed): a deployment a tool started must not outlive it."""
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(0.5)
    log.warning("the process that started this deployment (%d) is gone; stopping", parent)
    stop.set()


def _admin_server(spec: DeploymentSpec, api: ControlApi,
                  server_class: type[uvicorn.Server]) -> uvicorn.Server | None:
    """The admin API on ``server.admin_host:admin_port`` (with the data port's TLS), if set."""
    import uvicorn

    server = spec.server
    if server.admin_port is None or not server.admin_token:
        return None
    return server_class(uvicorn.Config(
        api.public_app(server.admin_token), host=server.admin_host or server.host,
        port=server.admin_port, log_level="warning", access_log=False, lifespan="off",
        ssl_certfile=server.tls_cert, ssl_keyfile=server.tls_key))
