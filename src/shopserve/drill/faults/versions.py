"""Faults on model versions: a corrupted artifact deployed, a bad version rolled out as canary.

Both write to the registry; both put it back as it was (restored bytes, alias moved back, the
drill's own version deleted).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto, helper

from shopserve.drill.faults.base import Fault, FaultContext, wait_replicas
from shopserve.drill.results import Check
from shopserve.drill.target import DrillTarget
from shopserve.errors import ShopserveError, UsageError
from shopserve.registry import ModelVersion, Registry
from shopserve.registry.refs import parse_ref


def _registry(target: DrillTarget) -> Registry:
    if target.home is None:
        raise UsageError("this fault writes to the registry: give --home or run with --deployment")
    return Registry.open(target.home)


def _serving(target: DrillTarget, model: str) -> str:
    """The registry ref now answering for endpoint ``model``."""
    refs = target.status().get("state", {}).get("refs", {})
    return str(refs.get(model) or target.refs.get(model) or f"{model}@production")


def _copy_version(reg: Registry, base: ModelVersion, edit: Any, note: str) -> ModelVersion:
    """Register a new version of ``base.name`` whose graph was changed by ``edit``."""
    loaded = reg.load(base.ref)
    graph = str(base.config.get("graph", "model.onnx"))
    model = onnx.load(str(loaded.files[graph]))
    edit(model)
    model.doc_string = f"{note} (made by a shopserve drill at {time.time():.6f})"
    with tempfile.TemporaryDirectory(prefix="shopserve-drill-") as tmp:
        path = Path(tmp) / graph
        onnx.save(model, str(path))
        files = {**loaded.files, graph: path}
        return reg.register(base.name, files, base.kind, signature=base.signature,
                            config=base.config, metrics=dict(base.metrics), parent=base.ref)


def _constant_scores(score: float) -> Any:
    def edit(model: onnx.ModelProto) -> None:
        out = model.graph.output[0].name
        raw = f"{out}__drill_raw"
        for node in model.graph.node:
            node.output[:] = [raw if o == out else o for o in node.output]
        model.graph.initializer.extend([
            helper.make_tensor("drill_zero", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("drill_score", TensorProto.FLOAT, [], [score])])
        model.graph.node.extend([
            helper.make_node("Mul", [raw, "drill_zero"], [f"{raw}_0"]),
            helper.make_node("Add", [f"{raw}_0", "drill_score"], [out])])
    return edit


class CorruptArtifact(Fault):
    def describe(self) -> str:
        return (f"register a copy of the version serving {self.spec.model!r}, corrupt its "
                f"{self.spec.artifact!r} on disk, and ask the service to deploy it")

    def how_undone(self) -> str:
        return "the stored bytes are restored and the drill's version deleted from the registry"

    def check_target(self, target: DrillTarget) -> None:
        target.check_model(self.spec.model)
        _registry(target)

    def inject(self, ctx: FaultContext) -> None:
        reg = _registry(ctx.target)
        base = reg.get(_serving(ctx.target, self.spec.model))
        if self.spec.artifact not in base.files:
            raise UsageError(f"{base.ref} has no artifact {self.spec.artifact!r}; it has "
                             f"{sorted(base.files)}")
        bad = _copy_version(reg, base, lambda m: None, "corrupted copy")
        self.detail.update(base=base.ref, base_version=base.version, version=bad.ref)
        path = reg.store.path(bad.files[self.spec.artifact].sha256)
        data = path.read_bytes()
        self.detail["restore"] = (path, data)
        middle = len(data) // 2
        path.chmod(0o644)
        path.write_bytes(data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 64])
                         + data[middle + 64:])
        ok, answer = ctx.target.admin_job("deploy", {"model": self.spec.model, "ref": bad.ref})
        self.detail.update(deploy_refused=not ok, deploy_answer=answer)

    def undo(self, ctx: FaultContext) -> None:
        reg = _registry(ctx.target)
        if "restore" in self.detail:
            path, data = self.detail.pop("restore")
            path.write_bytes(data)
        if "version" in self.detail:
            reg.delete(self.detail["version"])
        wait_replicas(ctx.target, len(ctx.target.replicas()))

    def checks(self, ctx: FaultContext, windows: dict[str, Any]) -> list[Check]:
        refused = self.detail.get("deploy_refused")
        base = self.detail.get("base_version")
        seen = sorted({int(v) for w in windows.values() for v in w.get("versions", {})})
        return [Check("deploy of the corrupted version refused", refused is True,
                      self.detail.get("deploy_answer"), "the deploy job failed"),
                Check("the old version keeps serving", seen == [base], seen,
                      f"only version {base} answered")]


class BadCanary(Fault):
    def describe(self) -> str:
        s = self.spec
        return (f"roll out a {s.variant} version of {s.model!r} (score {s.score:g}) as its "
                f"canary (alias {s.alias!r}, weight {s.weight:g})")

    def how_undone(self) -> str:
        return ("canary weight 0, the alias moved back, replicas replaced to reload it, and the "
                "drill's version deleted")

    def check_target(self, target: DrillTarget) -> None:
        target.check_model(self.spec.model)
        ref = target.canaries.get(self.spec.model)
        if target.canaries and (ref is None or parse_ref(ref).alias != self.spec.alias):
            raise UsageError(f"model {self.spec.model!r} needs a canary following alias "
                             f"{self.spec.alias!r} in the deployment (canary.ref: "
                             f"<name>@{self.spec.alias}); it has {ref!r}")
        _registry(target)

    def inject(self, ctx: FaultContext) -> None:
        reg = _registry(ctx.target)
        base = reg.get(_serving(ctx.target, self.spec.model))
        alias_ref = f"{base.name}@{self.spec.alias}"
        self.detail["previous"] = reg.get(alias_ref).ref
        bad = _copy_version(reg, base, _constant_scores(self.spec.score), "constant scores")
        self.detail.update(version=bad.ref, bad_version=bad.version)
        reg.promote(bad.ref, self.spec.alias)
        self._reload(ctx)
        r = ctx.target.admin("canary", {"model": self.spec.model, "weight": self.spec.weight})
        if r.status_code != 200:
            raise UsageError(f"setting the canary weight failed: {r.status_code} {r.text[:200]}")
        self.detail["weight_set_at"] = ctx.now()

    def _reload(self, ctx: FaultContext) -> None:
        for replica in sorted(ctx.target.replicas(), key=lambda r: r.slot):
            ok, answer = ctx.target.admin_job("drain", {"slot": replica.slot})
            if not ok:
                raise UsageError(f"replacing slot {replica.slot} failed: {answer}")

    def undo(self, ctx: FaultContext) -> None:
        reg = _registry(ctx.target)
        weights = ctx.target.status().get("state", {}).get("canary_weights", {})
        if weights.get(self.spec.model, 0) > 0:
            ctx.target.admin("canary", {"model": self.spec.model, "weight": 0.0})
        if "previous" in self.detail:
            reg.promote(self.detail["previous"], self.spec.alias)
            self._reload(ctx)
        if "version" in self.detail:
            try:
                reg.delete(self.detail["version"])
            except ShopserveError as exc:
                raise UsageError(f"could not delete the drill's version: {exc}") from exc
        wait_replicas(ctx.target, len(ctx.target.replicas()))

    def rollback_after_s(self, ctx: FaultContext) -> float | None:
        set_at: float | None = self.detail.get("weight_set_at")
        if set_at is None:
            return None
        for t, status in ctx.status_log.snapshots:
            weight = status.get("state", {}).get("canary_weights", {}).get(self.spec.model)
            if t >= set_at and weight == 0:
                return round(t - set_at, 3)
        return None

    def checks(self, ctx: FaultContext, windows: dict[str, Any]) -> list[Check]:
        after = self.rollback_after_s(ctx)
        bad = str(self.detail.get("bad_version"))
        answered = sum(w.get("versions", {}).get(bad, 0) for w in windows.values())
        total = sum(w.get("requests", 0) for w in windows.values()) or 1
        share = answered / total
        return [Check("bad canary rolled back automatically",
                      after is not None and after <= self.spec.max_rollback_s, after,
                      f"canary weight 0 within {self.spec.max_rollback_s} s"),
                Check("share of answers from the bad canary", share <= self.spec.max_share,
                      round(share, 4), f"≤ {self.spec.max_share}")]
