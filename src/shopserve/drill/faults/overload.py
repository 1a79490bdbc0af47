"""A flash sale: ``multiplier`` × the deployment's capacity for the fault's duration.

Capacity is measured, not assumed: just before the load starts, h2load keeps the deployment busy
(closed loop) with the request the spike will send, and the answered (2xx) requests/s are its
capacity for that request. The spike is h2load again, open loop enough (``spike.py``), offering
``multiplier`` × capacity minus the drill's own load, which keeps its rate throughout so that
baseline, spike and recovery are measured on the same requests. h2load's records are merged into
the drill's samples when the spike is undone.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from shopserve.drill.faults.base import Fault, FaultContext
from shopserve.drill.load import Sample
from shopserve.drill.measures import percentile
from shopserve.drill.results import Check
from shopserve.drill.spec import LoadSpec
from shopserve.drill.spike import (
    INSTALL_HINT,
    H2Record,
    SpikeProcess,
    SpikeRequest,
    as_samples,
    closed_loop,
    find_h2load,
    plan_spike,
    require_h2load,
)
from shopserve.drill.target import DrillTarget
from shopserve.errors import UnavailableError


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _latencies(records: list[H2Record], ok: bool) -> dict[str, float | None]:
    values = [r.latency_s for r in records if (200 <= r.status < 300) == ok]
    return {"p50_ms": _ms(percentile(values, 0.5)), "p99_ms": _ms(percentile(values, 0.99))}


class Overload(Fault):
    needs_admin = False

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self._request: SpikeRequest | None = None
        self._process: SpikeProcess | None = None
        self._samples: list[Sample] = []
        self._base_rate = 0.0

    def describe(self) -> str:
        s = self.spec
        what = (f"flash-sale spike: h2load offers {s.multiplier:g}× the capacity measured just "
                f"before the load ({s.calibrate_s:g} s closed loop on {s.calibrate_connections} "
                "connections, with the first request of the load's mix); the drill's own load "
                "keeps its rate")
        if find_h2load() is None:
            what += f". NOT RUNNABLE HERE: {INSTALL_HINT}; `drill run` refuses this drill"
        return what

    def how_undone(self) -> str:
        return "h2load stops sending at the end of the spike"

    def check_target(self, target: DrillTarget) -> None:
        require_h2load()

    def prepare(self, ctx: FaultContext, load: LoadSpec,
                requests: list[tuple[str, dict[str, Any]]]) -> None:
        path, body = requests[0]
        raw = orjson.dumps(body)
        folder = Path(tempfile.mkdtemp(prefix="shopserve-spike-"))
        (folder / "body.json").write_bytes(raw)
        self._request = SpikeRequest(ctx.target.url, path, folder / "body.json")
        self._base_rate = load.rate
        s = self.spec
        records = closed_loop(self._request, s.calibrate_connections, s.calibrate_s)
        answered = sum(200 <= r.status < 300 for r in records)
        if answered == 0:
            statuses = sorted({r.status for r in records})
            raise UnavailableError(f"capacity calibration: no request answered in "
                                   f"{s.calibrate_s:g} s (statuses {statuses})")
        self.detail.update(
            capacity_rps=round(answered / s.calibrate_s, 1),
            calibration={"seconds": s.calibrate_s, "connections": s.calibrate_connections,
                         "answered": answered, "refused": sum(r.status == 429 for r in records),
                         "other": sum(r.status != 429 and not 200 <= r.status < 300
                                      for r in records), **_latencies(records, ok=True)},
            spike_request={"path": path, "bytes": len(raw),
                           "candidates": len(body.get("candidates") or []) or None,
                           "answered_from_cache": self._cached(ctx.target.url, path, raw)})

    @staticmethod
    def _cached(url: str, path: str, raw: bytes) -> bool | None:
        """Whether the deployment answers the spike's (one, repeated) request from its cache."""
        try:
            r = httpx.post(url + path, content=raw, timeout=5.0,
                           headers={"content-type": "application/json"})
            return bool(r.json().get("cached")) if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def inject(self, ctx: FaultContext) -> None:
        assert self._request is not None, "prepare() measures the capacity first"
        s = self.spec
        target = s.multiplier * float(self.detail["capacity_rps"])
        plan = plan_spike(max(target - self._base_rate, 1.0), s.connection_rps, s.max_connections)
        self.detail.update(target_rps=round(target, 1), h2load_rps=round(plan.rate, 1),
                           h2load_connections=plan.connections,
                           h2load_rps_per_connection=round(plan.rps_per_connection, 3),
                           h2load_opened_per_ms=plan.opened_per_ms)
        self._process = SpikeProcess(self._request, plan, s.duration_s)

    def undo(self, ctx: FaultContext) -> None:
        process = self._process
        if process is None:
            return
        early = self.injected_at is not None and ctx.now() < self.injected_at + \
            self.spec.duration_s - 0.05
        records, error = process.stop() if early else process.finish()
        self._process = None
        if self._request is not None:
            shutil.rmtree(self._request.body.parent, ignore_errors=True)
        t0_wall = time.time() - ctx.now()
        self._samples = as_samples(records, t0_wall)
        self._summarize(records, error)

    def _summarize(self, records: list[H2Record], error: str | None) -> None:
        seconds = self.spec.duration_s
        sent = len(records)
        offered = sent / seconds + self._base_rate if seconds > 0 else None
        capacity = float(self.detail["capacity_rps"])
        refused = [r.latency_s for r in records if r.status == 429]
        limit = self.spec.max_reject_ms
        self.detail.update(
            h2load_error=error, h2load_sent=sent,
            offered_rps=None if offered is None else round(offered, 1),
            offered_x_capacity=None if offered is None else round(offered / capacity, 2),
            spike_answered=sum(200 <= r.status < 300 for r in records),
            spike_refused=len(refused),
            spike_lost=sum(r.status != 429 and not 200 <= r.status < 300 for r in records),
            spike_admitted=_latencies(records, ok=True),
            spike_refusals={"p50_ms": _ms(percentile(refused, 0.5)),
                            "p95_ms": _ms(percentile(refused, 0.95)),
                            "p99_ms": _ms(percentile(refused, 0.99)),
                            "within_limit_share": None if not refused or limit is None else
                            round(sum(v * 1000 <= limit for v in refused) / len(refused), 4)})

    def samples(self) -> list[Sample]:
        return self._samples

    def checks(self, ctx: FaultContext, windows: dict[str, Any]) -> list[Check]:
        s, d = self.spec, self.detail
        out = []
        if "capacity_rps" in d:
            times = d.get("offered_x_capacity")
            want = s.min_offered * s.multiplier
            out.append(Check(f"spike offered {s.multiplier:g}× capacity",
                             times is not None and times >= want,
                             f"{d.get('offered_rps')} requests/s = {times}× "
                             f"{d['capacity_rps']}", f"≥ {want:g}× capacity (measured)"))
        if s.max_reject_ms is not None:
            fault = windows.get("fault", {})
            p99, refused = fault.get("rejected_p99_ms"), fault.get("rejected", 0)
            ok = bool(refused) and p99 is not None and p99 <= s.max_reject_ms
            out.append(Check("excess requests are rejected fast", ok,
                             p99 if refused else "nothing was refused",
                             f"some refused (429), p99 of the refusals ≤ {s.max_reject_ms} ms"))
        return out

