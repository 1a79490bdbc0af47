"""Process faults: a replica killed (SIGKILL) or hung (SIGSTOP/SIGCONT), a zone lost, the
supervisor killed. Every pid is checked to belong to the deployment before it is signalled."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import psutil

from shopserve.drill.faults.base import Fault, FaultContext, wait_replicas
from shopserve.drill.results import Check
from shopserve.drill.spec import SelectMode, TargetSpec
from shopserve.drill.target import DrillTarget, ReplicaInfo, select_replicas
from shopserve.errors import UsageError


class _SignalFault(Fault):
    sig = signal.SIGKILL
    verb = "kill (SIGKILL)"

    def selection(self) -> TargetSpec:
        return self.spec.target  # type: ignore[no-any-return]

    def describe(self) -> str:
        sel = self.selection()
        what = {SelectMode.ONE: "one replica", SelectMode.ALL: "every replica",
                SelectMode.COUNT: f"{sel.count} replica(s)",
                SelectMode.PERCENTAGE: f"{sel.percentage}% of the replicas",
                SelectMode.ZONE: f"every replica in zone {sel.zone!r}"}[sel.select]
        return f"{self.verb} {what}"

    def how_undone(self) -> str:
        return "the supervisor restarts the replica; the drill waits until all are ready again"

    def check_target(self, target: DrillTarget) -> None:
        sel = self.selection()
        if sel.select is SelectMode.ZONE and target.zones and sel.zone not in target.zones:
            raise UsageError(f"zone {sel.zone!r} is not a zone of the deployment; it has "
                             f"{sorted(set(target.zones))}")

    def inject(self, ctx: FaultContext) -> None:
        replicas = ctx.target.replicas()
        supervisor = ctx.target.supervisor_pid()
        chosen = select_replicas(replicas, self.selection())
        procs = [ctx.target.check_owned(r.pid, supervisor) for r in chosen]
        self.detail.update(total=len(replicas), pids=[r.pid for r in chosen],
                           slots=[r.slot for r in chosen], zones=sorted({r.zone for r in chosen}),
                           created={str(p.pid): p.create_time() for p in procs})
        for proc in procs:
            os.kill(proc.pid, self.sig)

    def undo(self, ctx: FaultContext) -> None:
        wait_replicas(ctx.target, int(self.detail.get("total", 1)), gone=set(self._gone()))

    def _gone(self) -> list[int]:
        return list(self.detail.get("pids", [])) if self.sig == signal.SIGKILL else []


class ReplicaCrash(_SignalFault):
    pass


class ReplicaHang(_SignalFault):
    sig = signal.SIGSTOP
    verb = "freeze (SIGSTOP)"

    def how_undone(self) -> str:
        return ("SIGCONT to every frozen replica still alive (the supervisor may have replaced "
                "it); the drill waits until all replicas are ready")

    def undo(self, ctx: FaultContext) -> None:
        for pid, created in self.detail.get("created", {}).items():
            try:
                proc = psutil.Process(int(pid))
                if proc.create_time() == created:  # never signal a reused pid
                    proc.send_signal(signal.SIGCONT)
            except psutil.NoSuchProcess:
                continue
        super().undo(ctx)


class ZoneLoss(_SignalFault):
    verb = "kill (SIGKILL)"

    def selection(self) -> TargetSpec:
        return TargetSpec(select=SelectMode.ZONE, zone=self.spec.zone)


class FrontKill(Fault):
    """SIGKILL the supervisor; its replicas must follow it; the drill then restarts the service
    as a process manager would."""

    def describe(self) -> str:
        return "kill (SIGKILL) the supervisor (front process) of the deployment"

    def how_undone(self) -> str:
        return "the drill starts the deployment again (as a process manager would)"

    def check_target(self, target: DrillTarget) -> None:
        if target.owner is None:
            raise UsageError("front-kill needs --deployment: the drill must own the service to "
                             "start it again")

    def inject(self, ctx: FaultContext) -> None:
        owner = ctx.target.owner
        replicas = ctx.target.replicas()
        supervisor = ctx.target.supervisor_pid()
        if supervisor != owner.pid:
            raise UsageError(f"supervisor {supervisor} is not the process the drill started "
                             f"({owner.pid}); refusing to kill it")
        self.detail.update(supervisor=supervisor, replica_pids=[r.pid for r in replicas],
                           total=len(replicas))
        os.kill(supervisor, signal.SIGKILL)
        self.detail["orphans_after_s"] = _orphans_gone(replicas, timeout_s=3.0)

    def undo(self, ctx: FaultContext) -> None:
        ctx.target.owner.restart()
        wait_replicas(ctx.target, int(self.detail.get("total", 1)))

    def checks(self, ctx: FaultContext, windows: dict[str, Any]) -> list[Check]:
        gone = self.detail.get("orphans_after_s")
        return [Check("replicas stop with their supervisor", gone is not None, gone,
                      "every replica gone within 3 s of the supervisor's death")]


def _orphans_gone(replicas: list[ReplicaInfo], timeout_s: float) -> float | None:
    """Seconds until every replica process is gone, or None if some outlived ``timeout_s``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        alive = [r for r in replicas if psutil.pid_exists(r.pid)
                 and psutil.Process(r.pid).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return round(time.monotonic() - start, 3)
        time.sleep(0.02)
    return None

