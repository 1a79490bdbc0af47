"""Prometheus metrics, shared by all replica processes (prometheus-client multiprocess mode).

``PROMETHEUS_MULTIPROC_DIR`` is set by the supervisor before any replica imports this module, so
``/metrics`` on any replica reports the sum over all of them.
"""

from __future__ import annotations

import functools
import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from shopserve.monitor.buffer import BufferedCounter, BufferedHistogram, flush

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LAG_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)

BATCH_SIZE = Histogram("shopserve_batch_size", "Rows per model call", ["model", "version"],
                       buckets=BATCH_BUCKETS)
CACHE = Counter("shopserve_cache", "Cache lookups by layer and result", ["layer", "result"])
FALLBACKS = Counter("shopserve_fallbacks", "Degraded answers by model and source",
                    ["model", "source"])
REJECTED = Counter("shopserve_rejected", "Requests refused before running", ["model", "reason"])
SCORES = Counter("shopserve_score_sum", "Sum of answered scores (for the canary guard)",
                 ["model", "version"])
SCORED = Counter("shopserve_scored", "Number of answered scores", ["model", "version"])
VERSION_SECONDS = Counter("shopserve_version_seconds", "Total model time per version",
                          ["model", "version"])
VERSION_ERRORS = Counter("shopserve_version_errors", "Model errors per version",
                         ["model", "version"])
VERSION_CALLS = Counter("shopserve_version_calls", "Model calls per version", ["model", "version"])
SHADOW = Counter("shopserve_shadow", "Shadow comparisons", ["model", "result"])
ADMISSION_LIMIT = Gauge("shopserve_admission_limit", "In-flight inference requests the replicas "
                        "admit now (summed over replicas)",
                        multiprocess_mode="livesum")
LOOP_LAG = Histogram("shopserve_loop_lag_seconds", "How late a replica's admission timer fired "
                     "(its event loop's lag; one per tick, every 2-25 ms)", buckets=LAG_BUCKETS)
RESTARTS = Counter("shopserve_replica_restarts", "Replicas restarted by the supervisor",
                   ["reason"])


@functools.cache
def cache_result(layer: str, result: str) -> BufferedCounter:
    return BufferedCounter(CACHE.labels(layer, result))


@functools.cache
def rejected(model: str, reason: str) -> BufferedCounter:
    return BufferedCounter(REJECTED.labels(model, reason))


@functools.cache
def loop_lag() -> BufferedHistogram:
    return BufferedHistogram(LOOP_LAG, LAG_BUCKETS)


@functools.cache
def fallbacks(model: str, source: str) -> BufferedCounter:
    return BufferedCounter(FALLBACKS.labels(model, source))


@functools.cache
def shadow(model: str, result: str) -> BufferedCounter:
    return BufferedCounter(SHADOW.labels(model, result))


def batch_size(model: str, version: str) -> BufferedHistogram:
    return BufferedHistogram(BATCH_SIZE.labels(model, version), BATCH_BUCKETS)


def version_counter(counter: Counter, model: str, version: str) -> BufferedCounter:
    return BufferedCounter(counter.labels(model, version))


def render() -> bytes:
    """The metrics of every process of this deployment, in Prometheus text format.

    This process's buffered counts are flushed first; other replicas' are at most about a
    second old (``shopserve.monitor.buffer``).
    """
    flush()
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    # request counts and latency, drift and feedback quality: shopserve.monitor
    from shopserve.monitor.metrics import render_scraped

    return bytes(generate_latest(registry)) + render_scraped()


def mark_dead(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
