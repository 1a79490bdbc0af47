"""Faults on model versions: a corrupted artifact deployed, a bad version rolled out as canary.

Both write to the registry; both put it back as it was (restored bytes, alias moved back, the
drill's own version deleted).
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from shopserve.drill.faults.base import Fault, FaultContext, wait_replicas
from shopserve.drill.results import Check
from shopserve.drill.spec import CanaryVariant
from shopserve.drill.target import DrillTarget
from shopserve.errors import ShopserveError, UsageError
from shopserve.registry import ModelVersion, Registry
from shopserve.registry.refs import parse_ref

SLOW_SIZE = 128
MAX_LINKS = 2000


def _registry(target: DrillTarget) -> Registry:
    if target.home is None:
        raise UsageError("this fault writes to the registry: give --home or run with --deployment")
    return Registry.open(target.home)


def _serving(target: DrillTarget, model: str) -> str:
    """The registry ref now answering for endpoint ``model``."""
    refs = target.status().get("state", {}).get("refs", {})
    return str(refs.get(model) or target.refs.get(model) or f"{model}@production")


def _copy_version(reg: Registry, base: ModelVersion, edit: Callable[[onnx.ModelProto], None],
                  note: str) -> ModelVersion:
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


def _rewire_output(model: onnx.ModelProto) -> tuple[str, str]:
    """Rename the graph's first output inside the graph; (raw name, output name) for the edit
    that must produce the output from the raw scores again."""
    out = model.graph.output[0].name
    raw = f"{out}__drill_raw"
    for node in model.graph.node:
        node.output[:] = [raw if o == out else o for o in node.output]
    return raw, out


def _fixed_scores(value: float) -> Callable[[onnx.ModelProto], None]:
    """Every score replaced by ``value`` (a constant, or NaN)."""
    def edit(model: onnx.ModelProto) -> None:
        raw, out = _rewire_output(model)
        model.graph.initializer.extend([
            helper.make_tensor("drill_zero", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("drill_score", TensorProto.FLOAT, [], [value])])
        model.graph.node.extend([
            helper.make_node("Mul", [raw, "drill_zero"], [f"{raw}_0"]),
            helper.make_node("Add", [f"{raw}_0", "drill_score"], [out])])
    return edit


def _slow_chain(links: int, size: int = SLOW_SIZE) -> Callable[[onnx.ModelProto], None]:
    """The same scores after ``links`` size×size MatMuls that depend on the scores (so ONNX
    Runtime can neither fold nor drop them) and whose result is added times zero."""
    def edit(model: onnx.ModelProto) -> None:
        raw, out = _rewire_output(model)
        rng = np.random.default_rng(0)
        model.graph.initializer.extend([
            helper.make_tensor("drill_zero", TensorProto.FLOAT, [], [0.0]),
            numpy_helper.from_array(
                (rng.standard_normal((size, size)) / size).astype(np.float32), "drill_seed"),
            numpy_helper.from_array(np.eye(size, dtype=np.float32), "drill_link")])
        nodes = [helper.make_node("ReduceSum", [raw], ["drill_s"], keepdims=0),
                 helper.make_node("Mul", ["drill_s", "drill_zero"], ["drill_z"]),
                 helper.make_node("Add", ["drill_seed", "drill_z"], ["drill_h0"])]
        nodes += [helper.make_node("MatMul", [f"drill_h{i}", "drill_link"], [f"drill_h{i + 1}"])
                  for i in range(links)]
        nodes += [helper.make_node("ReduceSum", [f"drill_h{links}"], ["drill_r"], keepdims=0),
                  helper.make_node("Mul", ["drill_r", "drill_zero"], ["drill_r0"]),
                  helper.make_node("Add", [raw, "drill_r0"], [out])]
        model.graph.node.extend(nodes)
    return edit


def _run_seconds(model: onnx.ModelProto, repeats: int = 30) -> float:
    """Median seconds of one run on a one-row batch of zeros, through shopserve's ORT adapter."""
    from shopserve.runtime.onnx import OnnxModel

    session = OnnxModel(model.SerializeToString())
    feed = {s.name: np.zeros([1 if d < 0 else d for d in s.shape], dtype=s.dtype)
            for s in session.signature.inputs}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(feed, check=False)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def slow_links(base: onnx.ModelProto, slowdown: float,
               served_call_s: float | None = None) -> tuple[int, float]:
    """How many chain links make one call ``slowdown`` times slower on this machine: a call
    as the service measured it (``served_call_s``, features included) or, without it, the bare
    ONNX Runtime run; and the seconds the links add."""
    base_s = _run_seconds(base)
    probe = onnx.ModelProto()
    probe.CopyFrom(base)
    _slow_chain(16)(probe)
    per_link = max((_run_seconds(probe) - base_s) / 16, 1e-7)
    added = (slowdown - 1) * (served_call_s or base_s)
    links = min(max(1, math.ceil(added / per_link)), MAX_LINKS)
    return links, links * per_link


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
        what = {CanaryVariant.CONSTANT: f"constant-score ({s.score:g})",
                CanaryVariant.NAN: "NaN-score",
                CanaryVariant.SLOW: f"{s.slowdown:g}× slower (same scores)"}[s.variant]
        return (f"roll out a {what} version of {s.model!r} as its canary (alias {s.alias!r}, "
                f"weight {s.weight:g})")

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
        bad = _copy_version(reg, base, self._edit(ctx, reg, base), f"{self.spec.variant} canary")
        self.detail.update(version=bad.ref, bad_version=bad.version)
        reg.promote(bad.ref, self.spec.alias)
        self._reload(ctx)
        r = ctx.target.admin("canary", {"model": self.spec.model, "weight": self.spec.weight})
        if r.status_code != 200:
            raise UsageError(f"setting the canary weight failed: {r.status_code} {r.text[:200]}")
        self.detail["weight_set_at"] = ctx.now()

    def _edit(self, ctx: FaultContext, reg: Registry,
              base: ModelVersion) -> Callable[[onnx.ModelProto], None]:
        s = self.spec
        if s.variant is CanaryVariant.CONSTANT:
            return _fixed_scores(s.score)
        if s.variant is CanaryVariant.NAN:
            return _fixed_scores(math.nan)
        graph = str(base.config.get("graph", "model.onnx"))
        call_s = ctx.target.version_call_seconds(s.model).get(str(base.version))
        links, added = slow_links(onnx.load(str(reg.load(base.ref).files[graph])), s.slowdown,
                                  call_s)
        self.detail.update(links=links, stable_call_ms=None if call_s is None
                           else round(call_s * 1000, 3), added_ms=round(added * 1000, 3))
        return _slow_chain(links)

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
