"""Run one peer on one workload: start it, time its first good answer, load it, watch its memory.

The peer runs in its own session (process group), pinned to the server cores when pinning is
on; its memory is the summed RSS of every process in that session or below it, sampled while
the load runs. Whatever happens, the whole group is killed before the next peer starts.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from peers.catalog import Launch, LaunchContext, PeerSpec
from peers.workloads import Workload
from peers.wrk import Cell, run_wrk

REFUSED_FOR_S = 15.0


@dataclass(frozen=True)
class Pinning:
    server_cpus: str | None  # e.g. "0"; None: no pinning
    load_cpus: str | None

    def describe(self) -> str:
        if self.server_cpus is None:
            return "none: server and load generator share every core"
        return (f"server on CPU {self.server_cpus}, load generator (wrk) on CPU "
                f"{self.load_cpus} (taskset)")


@dataclass(frozen=True)
class RunSettings:
    concurrency: tuple[int, ...]
    duration_s: int
    warmup_s: int
    pinning: Pinning
    out_dir: Path


@dataclass
class PeerResult:
    peer: str
    workload: str
    status: str  # ok, or why it has no numbers
    cold_start_s: float | None = None
    rss_mib: float | None = None
    cells: list[Cell] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"peer": self.peer, "workload": self.workload, "status": self.status,
                "cold_start_s": self.cold_start_s, "rss_mib": self.rss_mib,
                "cells": [c.to_dict() for c in self.cells]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PeerProcess:
    """A started peer: its process group, log and memory sampling."""

    def __init__(self, launch: Launch, log: Path, cpus: str | None) -> None:
        argv = ["taskset", "-c", cpus, *launch.argv] if cpus else launch.argv
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                         env={**os.environ, **launch.env}, cwd=launch.cwd,
                                         start_new_session=True)
        self.seen: set[int] = {self.proc.pid}
        self.peak_rss = 0

    def members(self) -> list[psutil.Process]:
        """Every live process of the peer: its session, and whatever it spawned."""
        found: dict[int, psutil.Process] = {}
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(self.proc.pid)
            found[root.pid] = root
            for child in root.children(recursive=True):
                found[child.pid] = child
        for p in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                if os.getsid(p.pid) == self.proc.pid:
                    found[p.pid] = p
        self.seen |= set(found)
        return list(found.values())

    def sample_rss(self) -> int:
        total = 0
        for p in self.members():
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        self.peak_rss = max(self.peak_rss, total)
        return total

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 3) -> str:
        text = self.log.read_text(errors="replace").strip().splitlines()
        return " | ".join(x.strip()[:160] for x in text[-lines:])

    def kill(self) -> None:
        self.members()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in self.seen - {self.proc.pid}:  # anything that left the group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


def first_good_answer(proc: PeerProcess, port: int, path: str, body: bytes, expect: str,
                      started: float, timeout_s: float) -> float:
    """Seconds from process start to the first 200 answer that contains ``expect``."""
    deadline = started + timeout_s
    last = "no answer"
    refused_since: float | None = None  # a client error that persists is a wrong request
    while time.perf_counter() < deadline:
        if not proc.alive():
            raise RuntimeError(f"exited with code {proc.proc.returncode}: {proc.tail()}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            if response.status == 200 and expect.encode() in data:
                return time.perf_counter() - started
            last = f"HTTP {response.status}: {data[:200]!r}"
            if response.status in (400, 405, 415, 422):
                refused_since = refused_since or time.perf_counter()
                if time.perf_counter() - refused_since > REFUSED_FOR_S:
                    break
        except (OSError, http.client.HTTPException) as exc:
            last = type(exc).__name__
        finally:
            conn.close()
        time.sleep(0.05)
    waited = time.perf_counter() - started
    raise RuntimeError(f"no good answer after {waited:.0f} s (last: {last}); log: {proc.tail()}")


def run_peer(peer: PeerSpec, python: Path, workload: Workload, settings: RunSettings) \
        -> PeerResult:
    work = settings.out_dir / "logs" / f"{peer.name}-{workload.name}"
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    ctx = LaunchContext(python, workload.model_name, workload.model_path, workload.registry_ref,
                        workload.registry_home, workload.output, port,
                        (free_port(), free_port(), free_port()), work)
    launch = peer.launch(ctx)
    body = workload.body(peer.body)
    url = f"http://127.0.0.1:{port}{launch.path}"
    result = PeerResult(peer.name, workload.name, "ok")
    started = time.perf_counter()
    proc = PeerProcess(launch, work / "server.log", settings.pinning.server_cpus)
    try:
        result.cold_start_s = first_good_answer(proc, port, launch.path, body, workload.output,
                                                started, peer.startup_timeout_s)
        stop = threading.Event()
        sampler = threading.Thread(target=_sample, args=(proc, stop), daemon=True)
        sampler.start()
        try:
            for conc in settings.concurrency:
                if settings.warmup_s:
                    run_wrk(url, body, conc, settings.warmup_s, settings.pinning.load_cpus)
                result.cells.append(run_wrk(url, body, conc, settings.duration_s,
                                            settings.pinning.load_cpus))
                if not proc.alive():
                    raise RuntimeError(f"died under load: {proc.tail()}")
        finally:
            stop.set()
            sampler.join()
        result.rss_mib = proc.peak_rss / 2**20
    except Exception as exc:  # a peer that fails gets a row saying why; the run goes on
        result.status = f"failed: {exc}"
    finally:
        proc.kill()
    return result


def _sample(proc: PeerProcess, stop: threading.Event) -> None:
    while True:
        proc.sample_rss()
        if stop.wait(0.5):
            return
