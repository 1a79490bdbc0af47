"""The fault lifecycle (pending → injected → undone | undo failed) and the context faults use."""

from __future__ import annotations

import abc
import enum
import time
from dataclasses import dataclass, field
from typing import Any

from shopserve.drill.load import Sample
from shopserve.drill.results import Check
from shopserve.drill.spec import FaultSpec, FaultType, LoadSpec
from shopserve.drill.target import DrillTarget
from shopserve.errors import UnavailableError


class FaultState(enum.Enum):
    PENDING = "pending"
    INJECTED = "injected"
    UNDONE = "undone"
    UNDO_FAILED = "undo_failed"
    INJECT_FAILED = "inject_failed"


@dataclass
class StatusLog:
    """Admin status snapshots taken during the drill: (seconds since load start, status)."""

    snapshots: list[tuple[float, dict[str, Any]]] = field(default_factory=list)


@dataclass
class FaultContext:
    target: DrillTarget
    t0: float  # monotonic time the load started
    status_log: StatusLog

    def now(self) -> float:
        return time.monotonic() - self.t0


class Fault(abc.ABC):
    """Subclasses implement ``inject`` and ``undo`` (blocking; run on a worker thread)."""

    needs_admin = True

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.state = FaultState.PENDING
        self.injected_at: float | None = None  # seconds since load start
        self.undone_at: float | None = None
        self.detail: dict[str, Any] = {}
        self.error: str | None = None

    @property
    def name(self) -> str:
        return str(self.spec.type.value)

    @abc.abstractmethod
    def describe(self) -> str: ...

    @abc.abstractmethod
    def how_undone(self) -> str: ...

    def check_target(self, target: DrillTarget) -> None:  # noqa: B027 (optional hook)
        """Refuse, before anything runs, a fault this target cannot take."""

    def prepare(self, ctx: FaultContext, load: LoadSpec,  # noqa: B027 (optional hook)
                requests: list[tuple[str, dict[str, Any]]]) -> None:
        """Measure what the fault needs, after the steady state and before the load starts."""

    @abc.abstractmethod
    def inject(self, ctx: FaultContext) -> None: ...

    @abc.abstractmethod
    def undo(self, ctx: FaultContext) -> None: ...

    def samples(self) -> list[Sample]:
        """Requests the fault sent itself, measured like the load's (after it is undone)."""
        return []

    def checks(self, ctx: FaultContext, windows: dict[str, Any]) -> list[Check]:
        """Fault-specific hypotheses, judged after the drill."""
        return []


def wait_replicas(target: DrillTarget, count: int, timeout_s: float = 60.0,
                  gone: set[int] | None = None) -> list[Any]:
    """Wait until ``count`` replicas are ready and alive (none of the pids in ``gone``)."""
    import psutil

    deadline = time.monotonic() + timeout_s
    last: list[Any] = []
    while time.monotonic() < deadline:
        try:
            last = target.replicas()
        except UnavailableError:
            time.sleep(0.1)
            continue
        alive = [r for r in last if r.state == "ready" and psutil.pid_exists(r.pid)
                 and r.pid not in (gone or set())
                 and psutil.Process(r.pid).status() != psutil.STATUS_STOPPED]
        if len(alive) >= count:
            return alive
        time.sleep(0.1)
    raise UnavailableError(f"the deployment did not get back to {count} ready replicas within "
                           f"{timeout_s} s (now: {last})")


def build_fault(spec: FaultSpec) -> Fault:
    from shopserve.drill import ray_faults
    from shopserve.drill.faults import dependencies, overload, processes, versions

    kinds: dict[FaultType, type[Fault]] = {
        FaultType.REPLICA_CRASH: processes.ReplicaCrash,
        FaultType.REPLICA_HANG: processes.ReplicaHang,
        FaultType.ZONE_LOSS: processes.ZoneLoss,
        FaultType.FRONT_KILL: processes.FrontKill,
        FaultType.PROXY: dependencies.ProxyImpairment,
        FaultType.REDIS_OUTAGE: dependencies.RedisOutage,
        FaultType.OVERLOAD: overload.Overload,
        FaultType.CORRUPT_ARTIFACT: versions.CorruptArtifact,
        FaultType.BAD_CANARY: versions.BadCanary,
        FaultType.RAY_REPLICA_KILL: ray_faults.RayReplicaKill,
        FaultType.RAY_NODE_KILL: ray_faults.RayNodeKill,
    }
    return kinds[spec.type](spec)
