"""The supervisor: one SO_REUSEPORT socket per replica slot; starts, checks, replaces replicas.

No request passes through it. A slot socket joins the port only when its replica listens on it,
after warm-up. A crashed or hung replica is killed and its slot socket closed (queued connections
fail fast, the kernel stops routing to it); planned replacements overlap the new replica with the
old one on the same socket, so no connection is dropped. While no replica is ready the
supervisor answers on the port itself: 503 with Retry-After (``unavailable.py``).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from shopserve.errors import UnavailableError
from shopserve.registry import Registry
from shopserve.serve import metrics
from shopserve.serve.spec import DeploymentSpec
from shopserve.serve.state import ControlState
from shopserve.serve.unavailable import UnavailableResponder

log = logging.getLogger("shopserve.serve")
RESTART_BACKOFF_S = 2.0  # a replica that exited while starting is started again after this


class ReplicaState(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"


@dataclass
class Replica:
    slot: int
    zone: str
    process: subprocess.Popen[bytes]
    port: int  # private loopback port for health checks
    state: ReplicaState = ReplicaState.STARTING
    failures: int = 0
    started: float = 0.0


def _tls_context(spec: DeploymentSpec) -> ssl.SSLContext | None:
    if spec.server.tls_cert is None or spec.server.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(spec.server.tls_cert, spec.server.tls_key)
    return context


def slot_socket(host: str, port: int) -> socket.socket:
    """Bound to the shared port but not listening: it joins the port's ``SO_REUSEPORT`` group
    (and gets connections) only when its replica calls ``listen``, once warmed up."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def listen_socket(host: str, port: int) -> socket.socket:
    sock = slot_socket(host, port)
    sock.listen(2048)
    return sock


class Supervisor:
    """Starts ``spec.replicas`` processes, keeps them healthy, and replaces them on demand."""

    def __init__(self, spec: DeploymentSpec, run_dir: Path, control_url: str = "") -> None:
        self.spec = spec
        self.run_dir = run_dir
        self.state_path = run_dir / "state.json"
        self.spec_path = run_dir / "deployment.json"
        self.control_url = control_url
        self.slots: list[socket.socket] = []
        self.replicas: dict[int, Replica] = {}
        self.port = spec.server.port
        # health checks go to each replica's private loopback port, which speaks TLS when the
        # deployment does; the certificate names the public host, so it is not verified here.
        # No keep-alive: an idle TLS connection held here made a draining replica wait for its
        # close_notify until the drain timeout (10 s per replica, measured)
        self.http = httpx.AsyncClient(timeout=spec.health.timeout_s,
                                      verify=spec.server.tls_cert is None,
                                      limits=httpx.Limits(max_keepalive_connections=0))
        self.private = f"{spec.server.scheme}://127.0.0.1"
        self.stopping = False
        self.unavailable: UnavailableResponder | None = None
        self._starting: set[asyncio.Task[None]] = set()

    def open_sockets(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # the spec holds the tokens: readable by this user only
        fd = os.open(self.spec_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(self.spec.model_dump_json())
        if not self.state_path.exists():
            # pinned versions: a replica restarted later serves what the others serve, even
            # if an alias moved in the meantime
            ControlState(refs=self.resolved_refs()).write(self.state_path)
        for _ in range(self.spec.replicas):
            sock = slot_socket(self.spec.server.host, self.port)
            self.port = sock.getsockname()[1]
            self.slots.append(sock)
        self.unavailable = UnavailableResponder(self.spec.server.host, self.port,
                                                tls=_tls_context(self.spec))

    def resolved_refs(self) -> dict[str, str]:
        registry = Registry.open(self.spec.home)
        return {m.endpoint: registry.get(m.ref).ref for m in self.spec.models}

    def spawn(self, slot: int) -> Replica:
        private = listen_socket("127.0.0.1", 0)
        env = dict(os.environ)
        env["SHOPSERVE_CONTROL_URL"] = self.control_url
        fds = (self.slots[slot].fileno(), private.fileno())
        cmd = [sys.executable, "-m", "shopserve.serve.replica", "--spec", str(self.spec_path),
               "--state", str(self.state_path), *[a for fd in fds for a in ("--fd", str(fd))]]
        proc = subprocess.Popen(cmd, pass_fds=fds, env=env, start_new_session=True)
        port = private.getsockname()[1]
        private.close()
        zone = self.spec.zones[slot % len(self.spec.zones)]
        return Replica(slot, zone, proc, port, started=time.monotonic())

    async def wait_ready(self, replica: Replica) -> None:
        deadline = time.monotonic() + self.spec.health.startup_timeout_s
        url = f"{self.private}:{replica.port}/v2/health/ready"
        while time.monotonic() < deadline:
            if replica.process.poll() is not None:
                raise UnavailableError(f"replica in slot {replica.slot} exited with code "
                                       f"{replica.process.returncode} while starting")
            try:
                if (await self.http.get(url)).status_code == 200:
                    replica.state = ReplicaState.READY
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
        self.kill(replica)
        raise UnavailableError(f"replica in slot {replica.slot} was not ready within "
                               f"{self.spec.health.startup_timeout_s} s")

    async def start(self) -> None:
        self.open_sockets()
        await self.cover()
        started = [self.spawn(i) for i in range(self.spec.replicas)]
        for r in started:
            self.replicas[r.slot] = r
        try:
            await asyncio.gather(*(self.wait_ready(r) for r in started))
        except Exception:
            await self.stop()
            raise
        await self.cover()

    async def cover(self) -> None:
        """Answer 503 on the port exactly while no replica is ready to."""
        if self.unavailable is not None:
            none_ready = not any(r.state is ReplicaState.READY for r in self.replicas.values())
            await self.unavailable.set(none_ready and not self.stopping)

    def kill(self, replica: Replica) -> None:
        if replica.process.poll() is None:
            os.kill(replica.process.pid, signal.SIGKILL)
        replica.process.wait()
        metrics.mark_dead(replica.process.pid)

    async def restart(self, slot: int, reason: str) -> None:
        """Unplanned: kill, close the slot socket so nothing queues on it, start afresh."""
        old = self.replicas[slot]
        log.warning("replica %d in slot %d %s; restarting", old.process.pid, slot, reason)
        metrics.RESTARTS.labels(reason).inc()
        self.kill(old)
        self.slots[slot].close()
        self.slots[slot] = slot_socket(self.spec.server.host, self.port)
        new = self.spawn(slot)
        self.replicas[slot] = new
        await self.cover()
        # warm-up runs in the background so that other slots are checked (and restarted) meanwhile
        task = asyncio.get_running_loop().create_task(self._await_ready(new))
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _await_ready(self, replica: Replica) -> None:
        try:
            await self.wait_ready(replica)
        except UnavailableError as exc:
            log.error("%s; will retry", exc)  # check() restarts a replica that exited starting
        await self.cover()

    async def replace(self, slot: int) -> None:
        """Planned: start a new replica beside the old on the same socket, then drain the old."""
        old = self.replicas[slot]
        new = self.spawn(slot)
        await self.wait_ready(new)  # raises (and kills new) when it does not come up
        self.replicas[slot] = new
        await self.drain(old)

    async def drain(self, replica: Replica) -> None:
        replica.state = ReplicaState.DRAINING
        if replica.process.poll() is None:
            replica.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.spec.health.drain_timeout_s + 2
        while replica.process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.kill(replica)

    async def check(self) -> None:
        """One round of health checks; dead or hung replicas are restarted."""
        for slot, r in list(self.replicas.items()):
            if self.stopping:
                return
            if (r.state is ReplicaState.STARTING and r.process.poll() is not None
                    and time.monotonic() - r.started > RESTART_BACKOFF_S):
                await self.restart(slot, "failed to start")
                continue
            if r.state is not ReplicaState.READY:
                continue
            if r.process.poll() is not None:
                await self.restart(slot, "crashed")
                continue
            try:
                ok = (await self.http.get(f"{self.private}:{r.port}/v2/health/live")) \
                    .status_code == 200
            except httpx.HTTPError:
                ok = False
            r.failures = 0 if ok else r.failures + 1
            if r.failures >= self.spec.health.failures:
                await self.restart(slot, "hung")
        await self.cover()

    async def watch(self) -> None:
        while not self.stopping:
            await asyncio.sleep(self.spec.health.interval_s)
            try:
                await self.check()
            except Exception:
                log.exception("health check round failed")

    async def stop(self) -> None:
        self.stopping = True
        await self.cover()
        for task in list(self._starting):
            task.cancel()
        await asyncio.gather(*(self.drain(r) for r in self.replicas.values()))
        for sock in self.slots:
            sock.close()
        await self.http.aclose()
