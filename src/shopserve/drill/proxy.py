"""A TCP fault proxy between the service and a dependency: delay, jitter, reset, blackhole, down.

It runs its own event loop on a thread, so the drill's load generator never slows it down; it
passes bytes through untouched until a fault mode is set, and again once it is cleared.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from dataclasses import dataclass

from shopserve.drill.spec import ProxyMode
from shopserve.errors import UnavailableError


@dataclass(frozen=True)
class ProxyFaultSettings:
    mode: ProxyMode
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    share: float = 1.0


class FaultProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to ``upstream_host:upstream_port``."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.fault: ProxyFaultSettings | None = None
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="shopserve-fault-proxy")
        self._rng = random.Random(0)

    def start(self) -> FaultProxy:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self.port = future.result(timeout=10)
        return self

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return int(self._server.sockets[0].getsockname()[1])

    def set_fault(self, fault: ProxyFaultSettings | None) -> None:
        """Change the mode; ``reset`` and ``down`` also cut every open connection at once."""
        self.fault = fault
        if fault is not None and fault.mode in (ProxyMode.RESET, ProxyMode.DOWN):
            self._call(self._cut_all())

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)  # type: ignore[arg-type]

    async def _cut_all(self) -> None:
        for writer in list(self._writers):
            _abort(writer)

    def _hit(self) -> bool:
        return self.fault is not None and self._rng.random() < self.fault.share

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        fault = self.fault
        if fault is not None and (fault.mode is ProxyMode.DOWN or
                                  (fault.mode is ProxyMode.RESET and self._hit())):
            _abort(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _abort(writer)
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                _abort(w)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                await self._impair()
                writer.write(data)
                await writer.drain()
        _abort(writer)

    async def _impair(self) -> None:
        """Hold a chunk back: ``delay`` (with jitter), or for ``blackhole`` until the fault ends."""
        fault = self.fault
        if fault is None or not self._hit():
            return
        if fault.mode is ProxyMode.BLACKHOLE:
            while self.fault is fault:
                await asyncio.sleep(0.01)
        elif fault.mode is ProxyMode.DELAY:
            jitter = self._rng.uniform(-fault.jitter_ms, fault.jitter_ms)
            await asyncio.sleep(max(fault.delay_ms + jitter, 0.0) / 1000)

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self.fault = None

        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            await self._cut_all()

        try:
            self._call(stop())
        except Exception as exc:  # the loop is gone already: nothing left to stop
            raise UnavailableError(f"fault proxy did not stop cleanly: {exc}") from exc
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            if not self._thread.is_alive():
                self._loop.close()


def _abort(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    if not transport.is_closing():
        transport.abort()
