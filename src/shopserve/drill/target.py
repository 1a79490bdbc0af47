"""What a drill acts on: the service URL, its admin API, its replica processes and its lock.

Replicas are found through the admin API (``/admin/status``: slot, zone, pid) and checked to be
children of the deployment's supervisor before any signal is sent to them.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import httpx
import psutil

from shopserve.drill.spec import SelectMode, TargetSpec
from shopserve.errors import ConflictError, NotFoundError, UnavailableError, UsageError


@dataclass(frozen=True)
class ReplicaInfo:
    slot: int
    zone: str
    pid: int
    state: str


@dataclass
class DrillTarget:
    """A live deployment; ``owner`` is set when the drill started it (``--deployment``)."""

    url: str
    admin_token: str | None = None
    home: Path | None = None
    zones: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    canaries: dict[str, str] = field(default_factory=dict)  # endpoint -> canary ref
    owner: Any = None  # shopserve.drill.deployment.OwnedDeployment
    redis_proxy: Any = None  # shopserve.drill.proxy.FaultProxy in front of the cache's Redis
    service_proxy: Any = None  # a FaultProxy the load goes through (proxy faults on the service)
    refs: dict[str, str] = field(default_factory=dict)  # endpoint -> stable ref

    def __post_init__(self) -> None:
        host = urlsplit(self.url).hostname
        if urlsplit(self.url).scheme not in ("http", "https") or not host:
            raise UsageError(f"target URL must look like http://HOST:PORT, got {self.url!r}")
        self.url = self.url.rstrip("/")

    def admin(self, action: str, body: dict[str, Any] | None = None,
              timeout_s: float = 120.0) -> httpx.Response:
        if not self.admin_token:
            raise UsageError("this fault needs the admin API: give --admin-token (or "
                             "SHOPSERVE_ADMIN_TOKEN), or run with --deployment")
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        try:
            if body is None:
                return httpx.get(f"{self.url}/admin/{action}", headers=headers, timeout=timeout_s)
            return httpx.post(f"{self.url}/admin/{action}", json=body, headers=headers,
                              timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise UnavailableError(f"admin API at {self.url} did not answer: {exc}") from exc

    def admin_job(self, action: str, body: dict[str, Any],
                  timeout_s: float = 120.0) -> tuple[bool, str]:
        """Start a long admin action (deploy, drain) and wait for it: (succeeded, its event)."""
        import time

        deadline = time.monotonic() + timeout_s
        r = self.admin(action, body)
        while r.status_code == 409 and "still running" in r.text and time.monotonic() < deadline:
            time.sleep(0.2)  # another job first: wait for it, as an operator would
            r = self.admin(action, body)
        if r.status_code == 200:
            return True, r.text[:300]
        if r.status_code != 202:
            return False, f"{r.status_code} {r.text[:300]}"
        job = str(r.json().get("job", ""))
        while time.monotonic() < deadline:
            status = self.status()
            if status.get("job") != job:
                for event in reversed(status.get("state", {}).get("events", [])):
                    if event.startswith(f"{job}: "):
                        return event == f"{job}: done", event
            time.sleep(0.1)
        raise UnavailableError(f"admin {action} job {job!r} did not finish in {timeout_s} s")

    def status(self) -> dict[str, Any]:
        r = self.admin("status", timeout_s=5.0)
        if r.status_code != 200:
            raise UnavailableError(f"admin status answered {r.status_code}: {r.text[:200]}")
        data: dict[str, Any] = r.json()
        return data

    def version_call_seconds(self, model: str) -> dict[str, float]:
        """Mean seconds of one model call per served version, from the service's ``/metrics``
        (empty when it has none yet)."""
        try:
            text = httpx.get(f"{self.url}/metrics", timeout=5.0).text
        except httpx.HTTPError as exc:
            raise UnavailableError(f"metrics at {self.url} did not answer: {exc}") from exc
        totals: dict[tuple[str, str], float] = {}
        for line in text.splitlines():
            name, _, rest = line.partition("{")
            if name not in ("shopserve_version_calls_total", "shopserve_version_seconds_total"):
                continue
            labels, _, value = rest.rpartition("} ")
            found = dict(part.split("=", 1) for part in labels.split(",") if "=" in part)
            if found.get("model", "").strip('"') == model:
                key = (name, found.get("version", "").strip('"'))
                totals[key] = totals.get(key, 0.0) + float(value)
        return {version: totals.get(("shopserve_version_seconds_total", version), 0.0) / calls
                for (name, version), calls in totals.items()
                if name == "shopserve_version_calls_total" and calls > 0}

    def replicas(self) -> list[ReplicaInfo]:
        return [ReplicaInfo(int(r["slot"]), str(r["zone"]), int(r["pid"]), str(r["state"]))
                for r in self.status()["replicas"]]

    def supervisor_pid(self) -> int:
        """The supervisor: the one parent every replica shares."""
        parents = set()
        for r in self.replicas():
            try:
                parents.add(psutil.Process(r.pid).ppid())
            except psutil.NoSuchProcess:
                continue
        if len(parents) != 1:
            raise UnavailableError(f"cannot tell the supervisor of {self.url} (parents {parents})"
                                   "; is the service on this machine?")
        return int(parents.pop())

    def check_owned(self, pid: int, supervisor: int) -> psutil.Process:
        """``pid`` as a process, refused unless it is a replica of this deployment."""
        try:
            proc = psutil.Process(pid)
            if proc.ppid() != supervisor:
                raise UsageError(f"process {pid} is not a replica of the deployment at "
                                 f"{self.url} (its parent is {proc.ppid()}); refusing to touch it")
        except psutil.NoSuchProcess as exc:
            raise NotFoundError(f"replica process {pid} is gone") from exc
        return proc

    def check_model(self, name: str) -> None:
        if self.models and name not in self.models:
            raise UsageError(f"model {name!r} is not served by the deployment at {self.url}; "
                             f"it serves {sorted(self.models)}")


def select_replicas(replicas: list[ReplicaInfo], spec: TargetSpec) -> list[ReplicaInfo]:
    """The replicas a fault acts on; a selection that names nothing in the deployment is refused."""
    ready = sorted((r for r in replicas if r.state == "ready"), key=lambda r: r.slot)
    if not ready:
        raise UnavailableError("no ready replica to act on")
    rng = random.Random(spec.seed)
    if spec.select is SelectMode.ONE:
        return [rng.choice(ready)]
    if spec.select is SelectMode.ALL:
        return ready
    if spec.select is SelectMode.COUNT:
        assert spec.count is not None
        if spec.count > len(ready):
            raise UsageError(f"target count {spec.count} is more than the {len(ready)} ready "
                             "replicas of the deployment")
        return rng.sample(ready, spec.count)
    if spec.select is SelectMode.PERCENTAGE:
        assert spec.percentage is not None
        n = max(1, round(len(ready) * spec.percentage / 100))
        return rng.sample(ready, n)
    chosen = [r for r in ready if r.zone == spec.zone]
    if not chosen:
        zones = sorted({r.zone for r in replicas})
        raise UsageError(f"zone {spec.zone!r} is not a zone of the deployment; it has {zones}")
    return chosen


class DrillLock:
    """One drill at a time per deployment: an exclusive ``flock`` released when the process ends."""

    def __init__(self, url: str, directory: Path | None = None) -> None:
        where = urlsplit(url.rstrip("/"))
        key = hashlib.sha256(f"{where.hostname}:{where.port}".encode()).hexdigest()[:16]
        base = directory or Path(os.environ.get("SHOPSERVE_DRILL_LOCKS",
                                                Path(tempfile.gettempdir()) / "shopserve-drills"))
        base.mkdir(parents=True, exist_ok=True)
        self.path = base / f"{key}.lock"
        self.url = url
        self._file: IO[str] | None = None

    def acquire(self) -> DrillLock:
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ConflictError(f"a drill is already running on {self.url} ({holder}); one "
                                "drill at a time per deployment") from exc
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
