"""Faults for a deployment on Ray: a replica actor killed, a worker node killed; each reports
what Ray's recovery did (replicas replaced, where they went, how long it took)."""

from __future__ import annotations

import abc
import time
from collections import Counter
from typing import Any

from shopserve.drill.faults.base import Fault, FaultContext
from shopserve.drill.spec import FaultType, RayNodeKillFault, RayReplicaKillFault
from shopserve.errors import UnavailableError, UsageError
from shopserve.runtime import ray as ray_rt


class _RayRecoveryFault(Fault):
    needs_admin = False

    def how_undone(self) -> str:
        return "Ray Serve replaces the lost replicas; the drill waits until all run again"

    def _snapshot(self) -> dict[str, Any]:
        actors = ray_rt.replica_actors(self.spec.app)
        return {"replicas": {a.name: a.node_id for a in actors},
                "nodes": {n.node_id: n.alive for n in ray_rt.nodes()}}

    def _connect(self) -> None:
        ray_rt.connect(self.spec.address)

    def inject(self, ctx: FaultContext | None) -> None:
        self._connect()
        self.detail["before"] = self._snapshot()
        self.detail["counts"] = ray_rt.wait_running(self.spec.app, 30)
        self._inject()
        self.detail["injected_at"] = time.monotonic()

    @abc.abstractmethod
    def _inject(self) -> None:
        """Take the replicas or node down; ``undo`` then waits for Ray to recover."""

    def undo(self, ctx: FaultContext | None) -> None:
        """Wait for Ray to bring every deployment back to its replica count; record how."""
        start = float(self.detail["injected_at"])
        deadline = start + self.spec.recover_timeout_s
        while time.monotonic() < deadline:
            status = ray_rt.app_status(self.spec.app)
            now = self._snapshot()
            if self._recovered(status, now):
                self.detail["after"] = now
                self.detail["recovered_s"] = round(time.monotonic() - start, 2)
                return
            time.sleep(0.25)
        self.detail["after"] = self._snapshot()
        status = ray_rt.app_status(self.spec.app)
        raise UnavailableError(f"Ray did not restore {self.spec.app!r} within "
                               f"{self.spec.recover_timeout_s} s: {status}; replica actors "
                               f"{self.detail['after']['replicas']}, nodes alive "
                               f"{self.detail['after']['nodes']}")

    def _recovered(self, status: dict[str, Any], now: dict[str, Any]) -> bool:
        """Ray has seen the fault (``_seen``), Ray Serve runs every replica again, and as many
        live replica actors as that run on live nodes, none of them a lost one."""
        counts = self.detail["counts"]
        placed = Counter(name.split("#")[1] for name in now["replicas"])
        return (self._seen(now) and status["status"] == "RUNNING"
                and status["replicas"] == counts
                and all(placed[d] == sum(c.values()) for d, c in counts.items())
                and not set(self.detail.get("lost", [])) & set(now["replicas"]))

    def _seen(self, now: dict[str, Any]) -> bool:
        return True

    def report(self) -> dict[str, Any]:
        """What happened, for the drill report: lost and new replicas, nodes, time to recover."""
        before = self.detail.get("before", {}).get("replicas", {})
        after = self.detail.get("after", {}).get("replicas", {})
        return {"fault": self.name, "lost": sorted(self.detail.get("lost", [])),
                "replaced_by": {name: node for name, node in after.items() if name not in before},
                "nodes_before": self.detail.get("before", {}).get("nodes", {}),
                "nodes_after": self.detail.get("after", {}).get("nodes", {}),
                "recovered_s": self.detail.get("recovered_s"),
                "killed_raylet_pid": self.detail.get("raylet_pid")}


class RayReplicaKill(_RayRecoveryFault):
    def describe(self) -> str:
        return f"kill one replica actor of {self.spec.deployment or 'a model deployment'} on Ray"

    def _inject(self) -> None:
        actors = [a for a in ray_rt.replica_actors(self.spec.app) if a.deployment != "gateway"
                  and (self.spec.deployment is None or a.deployment == self.spec.deployment)]
        if not actors:
            raise UsageError(f"no replica of {self.spec.deployment or 'any model'} in Ray Serve "
                             f"application {self.spec.app!r}")
        victim = actors[0]
        self.detail["lost"] = [victim.name]
        ray_rt.kill_actor(victim.name)


class RayNodeKill(_RayRecoveryFault):
    def describe(self) -> str:
        return f"kill Ray worker node {self.spec.node_id or '(the busiest)'}"

    def _inject(self) -> None:
        workers = [n for n in ray_rt.nodes() if n.alive and not n.head]
        replicas = self.detail["before"]["replicas"]
        if self.spec.node_id is not None:
            workers = [n for n in workers if n.node_id == self.spec.node_id]
        if not workers:
            raise UsageError("no live worker node to kill (the head node is never killed)")
        node = max(workers, key=lambda n: sum(1 for v in replicas.values() if v == n.node_id))
        self.detail["node"] = node.node_id
        self.detail["lost"] = [name for name, where in replicas.items() if where == node.node_id]
        self.detail["raylet_pid"] = ray_rt.kill_node(node.node_id)

    def _seen(self, now: dict[str, Any]) -> bool:
        """Until Ray reports the node dead, Ray Serve still counts its replicas as running."""
        return now["nodes"].get(self.detail["node"]) is False


RAY_FAULTS: dict[FaultType, type[_RayRecoveryFault]] = {
    FaultType.RAY_REPLICA_KILL: RayReplicaKill,
    FaultType.RAY_NODE_KILL: RayNodeKill,
}


def build_ray_fault(spec: RayReplicaKillFault | RayNodeKillFault) -> _RayRecoveryFault:
    return RAY_FAULTS[spec.type](spec)


def run_ray_fault(spec: RayReplicaKillFault | RayNodeKillFault) -> dict[str, Any]:
    """Inject one fault, wait for Ray's recovery, and return the report."""
    fault = build_ray_fault(spec)
    fault.inject(None)
    fault.undo(None)
    return fault.report()
