"""A real Ray cluster on 127.0.0.1 for the tests and the bench: a head (and worker nodes) started
with ``ray start`` in a private temp dir, and stopped by killing exactly its processes.

A one-node cluster can be loopback-only by itself (``loopback_only``); more nodes on one machine
keep to loopback only inside a network namespace (``netns.py``), where the caller runs this.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from shopserve.runtime.ray import LOOPBACK_ENV


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalRayCluster:
    """``ray start`` a head (and more nodes) on loopback; every process found by its temp dir."""

    def __init__(self, cpus_per_node: float = 1, loopback_only: bool = False) -> None:
        self.cpus = cpus_per_node
        self.loopback_only = loopback_only
        self.temp = Path(tempfile.mkdtemp(prefix="srt-", dir="/tmp"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        self.env.pop("RAY_ADDRESS", None)
        if loopback_only:
            self.env.update(LOOPBACK_ENV)
        self.workers = 0

    def _ray(self) -> str:
        # The `ray` script installed beside this interpreter (CI does not activate the venv).
        exe = Path(sys.executable).with_name("ray")
        return str(exe) if exe.exists() else str(Path(shutil.which("ray") or "ray"))

    def _start(self, args: list[str]) -> None:
        lo = 20_000 + (free_port() % 20_000)
        common = ["--node-ip-address=127.0.0.1", f"--num-cpus={self.cpus}",
                  f"--dashboard-agent-listen-port={free_port()}",
                  f"--min-worker-port={lo}", f"--max-worker-port={lo + 100}",
                  "--disable-usage-stats"]
        done = subprocess.run([self._ray(), "start", *args, *common], env=self.env,
                              capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            self.stop()
            raise RuntimeError(f"ray start failed:\n{done.stdout}\n{done.stderr}")

    def start_head(self) -> LocalRayCluster:
        self._start(["--head", f"--port={self.port}", "--include-dashboard=false",
                     f"--ray-client-server-port={free_port()}", f"--temp-dir={self.temp}"])
        return self

    def add_node(self) -> None:
        if self.loopback_only:
            raise RuntimeError("a loopback-only Ray has one node; run more in a namespace")
        self._start([f"--address={self.address}"])
        self.workers += 1

    def processes(self) -> list[psutil.Process]:
        """Every process of this cluster: their command lines name its temp dir or GCS port."""
        marks = (str(self.temp), f":{self.port}")
        found = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmd = " ".join(proc.info["cmdline"] or [])
            if proc.pid != os.getpid() and (any(m in cmd for m in marks) or self._holds(proc)):
                found.append(proc)
        return found

    def _holds(self, proc: psutil.Process) -> bool:
        """Ray renames its agents and workers (``ray::...``); they keep logs open in our dir."""
        if " ".join(proc.info["cmdline"] or [])[:5] != "ray::":
            return False
        try:
            return any(f.path.startswith(str(self.temp)) for f in proc.open_files())
        except psutil.Error:
            return False

    def raylet_pids(self) -> list[int]:
        return [p.pid for p in self.processes() if "raylet" in " ".join(p.cmdline()[:1])]

    def stop(self) -> None:
        for _ in range(3):
            procs = self.processes()
            if not procs:
                break
            for proc in procs:
                with contextlib.suppress(psutil.Error, ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
            psutil.wait_procs(procs, timeout=5)
            time.sleep(0.2)
        shutil.rmtree(self.temp, ignore_errors=True)
