"""The overload spike's h2load runs: connections opened over one send period, and the spike
stopped at its planned end when h2load falls behind (a real h2load against a small HTTP/1.1
server on 127.0.0.1 that answers after a set delay)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shopserve.drill.spike import SpikeProcess, SpikeRequest, _command, plan_spike

needs_h2load = pytest.mark.skipif(shutil.which("h2load") is None,
                                  reason="h2load is not installed (nghttp2-client)")


def test_connections_are_opened_over_one_tick() -> None:
    # 50/s each: a tick every 20 ms, 200 connections opened 10 per ms
    plan = plan_spike(10_000, 50, 1000)
    assert (plan.connections, plan.tick_s, plan.opened_per_ms) == (200, 0.02, 10)
    # h2load's timer fires at least every 10 ms: 400/s each still spreads over 10 ms
    plan = plan_spike(8_000, 400, 1000)
    assert (plan.connections, plan.tick_s, plan.opened_per_ms) == (20, 0.01, 2)
    assert plan_spike(30, 50, 1000).opened_per_ms == 1


def test_spike_command_is_rate_mode(tmp_path: Path) -> None:
    if shutil.which("h2load") is None:
        pytest.skip("h2load is not installed")
    request = SpikeRequest("http://127.0.0.1:1", "/v1/rank", tmp_path / "body.json")
    plan = plan_spike(1000, 50, 1000)
    cmd = _command(request, plan.connections, 2.0, tmp_path / "log", plan)
    flags = {cmd[i]: cmd[i + 1] for i in range(len(cmd) - 1)}
    assert flags["-n"] == "2000" and flags["-r"] == "1" and flags["--rate-period"] == "1ms"
    assert flags["-c"] == "20" and flags["--rps"] == "50.000" and "-D" not in cmd
    closed = _command(request, 8, 2.0, tmp_path / "log")
    assert "-D" in closed and "--rps" not in closed and "-r" not in closed


class SlowServer:
    """Answers every HTTP/1.1 request (Content-Length body) with 200 after ``delay_s``."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.seen = 0
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()
        server.close()
        tasks = asyncio.all_tasks(self.loop)
        for task in tasks:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.loop.run_until_complete(server.wait_closed())
        self.loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                self.seen += 1
                await asyncio.sleep(self.delay_s)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def slow_server() -> Iterator[SlowServer]:
    server = SlowServer(delay_s=0.05)
    yield server
    server.close()


@needs_h2load
def test_spike_stops_at_its_end_when_h2load_falls_behind(
        slow_server: SlowServer, tmp_path: Path) -> None:
    (tmp_path / "body.json").write_bytes(b'{"candidates": [{}]}')
    request = SpikeRequest(f"http://127.0.0.1:{slow_server.port}", "/v1/rank",
                           tmp_path / "body.json")
    # 4 connections asked for 100/s each, answered after 50 ms: at most ~20/s each get sent,
    # so the 400 requests would take ~5 s; the spike ends after 1 s anyway
    plan = plan_spike(400, 100, 1000)
    started = time.time()
    process = SpikeProcess(request, plan, 1.0)
    records, error = process.finish()
    took = time.time() - started
    assert error is None
    assert 1.0 <= took < 3.0, took
    assert 20 <= len(records) <= 120, len(records)  # closed loop at 50 ms: ~80
    assert all(r.status == 200 for r in records)
    assert max(r.start_s for r in records) < started + 1.5
    assert not process.tmp.exists()  # its log folder is removed


@needs_h2load
def test_spike_cut_short(slow_server: SlowServer, tmp_path: Path) -> None:
    (tmp_path / "body.json").write_bytes(b"{}")
    request = SpikeRequest(f"http://127.0.0.1:{slow_server.port}", "/", tmp_path / "body.json")
    process = SpikeProcess(request, plan_spike(100, 50, 1000), 30.0)
    time.sleep(0.5)
    started = time.monotonic()
    records, error = process.stop()
    assert error is None and time.monotonic() - started < 3.0
    assert records and process.proc.returncode is not None
