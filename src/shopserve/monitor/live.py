"""What a replica does for monitoring: sample answers into the live profile, log impressions,
store feedback durably, keep queue and canary gauges, and compute drift and quality on demand.

Serving calls ``answered`` (per answer, cheap) and ``run`` (one background task); everything
else happens off the request path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shopserve.config import home_settings
from shopserve.errors import ShopserveError
from shopserve.monitor import metrics, tracing
from shopserve.monitor.drift import LiveProfile, compare, read_live
from shopserve.monitor.eventlogs import FeedbackLog, ImpressionLog
from shopserve.monitor.feedback import Feedback, QualityTracker
from shopserve.monitor.profiles import Profile, reference_profile
from shopserve.monitor.requests import CURRENT, settings
from shopserve.registry import Registry

log = logging.getLogger("shopserve.monitor")
REFRESH_S = 2.0  # drift and quality are recomputed at most this often


class ReplicaMonitor:
    """Monitoring state of one replica process; ``plane`` is its ``DataPlane``."""

    def __init__(self, plane: Any, run_dir: Path) -> None:
        self.plane = plane
        self.settings = settings()
        tracing.start(self.settings.tracing)  # fails the replica's start if the extra is missing
        self.home = Path(plane.spec.home) if plane.spec.home else home_settings().home_dir
        self.run_dir = run_dir / "monitor"
        self.live = LiveProfile(self.settings, self.run_dir / "live")
        s = self.settings
        self.impressions = ImpressionLog(self.home / "monitor" / "impressions",
                                         s.impressions_segment_bytes, s.impressions_keep_bytes)
        self.feedback_dir = self.home / "monitor"
        self._feedback: FeedbackLog | None = None
        self.quality = QualityTracker(self.feedback_dir, self.impressions.directory)
        self.references: dict[str, Profile | None] = {}
        self.versions: list[tuple[str, int, str]] = []  # (endpoint, version, ref)
        self.pipes: dict[str, Any] = {}
        for endpoint in plane.endpoints.values():
            for runner in endpoint.runners():
                m = runner.model
                self.versions.append((endpoint.name, m.version, m.ref))
                self.pipes[m.ref] = m.pipe
                self.live.watch(endpoint.name, m.version, m.kind, m.meta.config)
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shopserve-monitor")
        self._cached: tuple[float, dict[str, Any]] = (0.0, {})

    # -- request path -------------------------------------------------------------------
    def answered(self, op: str, payload: Any, answer: Any) -> None:
        record = CURRENT.get()
        if record is not None:
            record.model, record.version = answer.model, str(answer.version)
            record.answer = answer
            products = _products(op, payload, answer.result)
            if products:
                self.impressions.record(record.id, answer.model, answer.version, products)
        if answer.fallback is None and not answer.cached:
            self.live.record(answer.model, answer.version, op, payload, answer.result)

    async def store_feedback(self, item: Feedback) -> None:
        """Written and fsync'd (on a worker thread) before this returns."""
        if self._feedback is None:
            self._feedback = FeedbackLog(self.feedback_dir, self.settings.feedback_segment_bytes,
                                         self.settings.feedback_keep_segments)
        await asyncio.get_running_loop().run_in_executor(self._io, self._feedback.append,
                                                          item.line())
        metrics.FEEDBACK.labels(item.event).inc()

    # -- background ---------------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.run_in_executor(self._io, self._load_references)
        while True:
            await asyncio.sleep(1.0)
            try:
                self._set_gauges()
                self.impressions.flush()
                data = self.live.snapshot()
                if data is not None:
                    await loop.run_in_executor(self._io, self.live.write, data)
            except Exception:
                log.exception("monitor round failed")

    def _set_gauges(self) -> None:
        for endpoint in self.plane.endpoints.values():
            for runner in endpoint.runners():
                v = str(runner.model.version)
                waiting = sum(b.waiting for b in runner.batchers.values())
                metrics.QUEUE_DEPTH.labels(endpoint.name, v).set(waiting)
            if endpoint.canary is not None:
                metrics.CANARY_WEIGHT.labels(endpoint.name, str(endpoint.canary.model.version)) \
                    .set(endpoint.canary_weight)

    def _load_references(self) -> None:
        registry = Registry.open(self.home)
        for _, _, ref in self.versions:
            try:
                self.references[ref] = reference_profile(registry, ref,
                                                         pipe=self.pipes.get(ref))
            except ShopserveError:
                self.references[ref] = None
            except Exception:
                log.exception("reference profile of %s failed", ref)
                self.references[ref] = None

    # -- on demand ----------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Drift reports and feedback quality, recomputed at most every ``REFRESH_S``."""
        at, cached = self._cached
        if time.monotonic() - at < REFRESH_S and cached:
            return cached
        self.impressions.flush()
        live = read_live(self.run_dir / "live", self.settings.drift_window_s)
        drift = []
        for name, version, ref in self.versions:
            reference = self.references.get(ref)
            key = f"{name}@{version}"
            if reference is None:
                drift.append({"model": name, "version": version, "alert": False,
                              "reference": "pending" if ref not in self.references else "none",
                              "live_rows": len(next(iter(live.get(key, {}).values()), [])),
                              "columns": []})
                continue
            report = compare(reference, live.get(key, {}), self.settings).to_json()
            drift.append({**report, "model": name, "reference": "eval.parquet"})
        result = {"drift": drift, "feedback": self.quality.refresh(),
                  "feedback_unjoined": self.quality.unjoined,
                  "feedback_events": self.quality.events_read}
        self._cached = (time.monotonic(), result)
        return result

    def close(self) -> None:
        tracing.stop()  # the last spans, waiting a few seconds at most
        self.impressions.flush()
        if self._feedback is not None:
            self._feedback.close()
        self._io.shutdown(wait=False)


class MonitorCollector(Collector):
    """Drift scores and feedback quality as metrics, computed when ``/metrics`` is scraped."""

    def __init__(self, monitor: ReplicaMonitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = self.monitor.snapshot()
        psi = GaugeMetricFamily("shopserve_drift_psi", "Population stability index of live "
                                "traffic against the version's evaluation data",
                                labels=["model", "version", "column"])
        pval = GaugeMetricFamily("shopserve_drift_p_value", "p-value of the two-sample test "
                                 "(ks or chi2) of live traffic against the evaluation data",
                                 labels=["model", "version", "column", "test"])
        alert = GaugeMetricFamily("shopserve_drift_alert", "1 when a column of the version "
                                  "drifted past the thresholds", labels=["model", "version"])
        rows = GaugeMetricFamily("shopserve_drift_live_rows", "Live rows profiled",
                                 labels=["model", "version"])
        for d in snap["drift"]:
            mv = [d["model"], str(d["version"])]
            alert.add_metric(mv, 1.0 if d["alert"] else 0.0)
            rows.add_metric(mv, float(d["live_rows"]))
            for c in d["columns"]:
                psi.add_metric([*mv, c["column"]], c["psi"])
                pval.add_metric([*mv, c["column"], c["test"]], c["p_value"])
        yield from (psi, pval, alert, rows)
        yield from _quality_families(snap["feedback"])


def _quality_families(feedback: dict[str, dict[str, Any]]) -> Iterator[GaugeMetricFamily]:
    names = {"ctr": "Share of answered requests with a click or purchase",
             "ndcg": "Mean NDCG@10 of answered requests with feedback",
             "impressions": "Answers that returned products"}
    for key, doc in names.items():
        family = GaugeMetricFamily(f"shopserve_feedback_{key}", doc, labels=["model", "version"])
        for mv, q in feedback.items():
            model, _, version = mv.rpartition("@")
            family.add_metric([model, version], float(q[key]))
        yield family


def _products(op: str, payload: Any, result: Any) -> list[str]:
    if op in ("search", "recommend"):
        return [str(h["product_id"]) for h in result]
    if op == "rank" and payload and "product_id" in payload[0]:
        order = sorted(range(len(result)), key=lambda i: -result[i])
        return [str(payload[i].get("product_id")) for i in order]
    return []
