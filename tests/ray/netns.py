"""A private network namespace with only ``lo`` up, for a multi-node Ray on one machine.

Inside it there is no route out, so Ray's node IP resolves to 127.0.0.1 and whatever Ray binds
(``*`` included) is reachable from this namespace only. Needs root (``ip netns``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time

import psutil


def unavailable_reason() -> str | None:
    """Why a namespace cannot be made here, or None when it can."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "making a network namespace (`ip netns add`) needs root"
    return None


class NetworkNamespace:
    """``ip netns add`` on enter; on exit every process still in it is killed, then it goes."""

    def __init__(self, prefix: str = "shopserve-ray") -> None:
        self.name = f"{prefix}-{os.getpid()}"

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)

    def __enter__(self) -> NetworkNamespace:
        self._ip("netns", "add", self.name)
        try:
            self._ip("netns", "exec", self.name, "ip", "link", "set", "lo", "up")
        except subprocess.CalledProcessError:
            self._ip("netns", "delete", self.name)
            raise
        return self

    def prefix(self) -> list[str]:
        """Put before a command line to run it inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def pids(self) -> list[int]:
        done = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True,
                              text=True, timeout=30, check=False)
        return [int(p) for p in done.stdout.split()]

    def __exit__(self, *exc: object) -> None:
        for _ in range(3):  # Ray daemons started in here outlive the command that started them
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(psutil.Error):
                psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)],
                                  timeout=5)
            time.sleep(0.2)
        self._ip("netns", "delete", self.name)
