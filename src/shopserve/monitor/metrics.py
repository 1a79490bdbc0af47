"""The Prometheus metrics monitoring adds to serving (conventional names and units).

Defined once per process; with ``PROMETHEUS_MULTIPROC_DIR`` set (as ``shopserve serve`` does)
every replica writes its own files and ``/metrics`` on any replica sums them. Gauges use
``live*`` modes, so a dead replica's values leave the sum. Per-request and per-batch metrics
are counted in the process and flushed to the files about once a second (``buffer.py``).
"""

from __future__ import annotations

import functools

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.registry import Collector

from shopserve.monitor.buffer import BufferedCounter, BufferedHistogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

REQUESTS = Counter("shopserve_requests", "Requests answered, by endpoint, model, version and "
                   "HTTP status", ["endpoint", "model", "version", "status"])
DURATION = Histogram("shopserve_request_duration_seconds", "End-to-end time to answer a "
                     "request, in the replica", ["endpoint", "model"], buckets=LATENCY_BUCKETS)
QUEUE_WAIT = Histogram("shopserve_queue_wait_seconds", "Time the oldest request of a batch "
                       "waited in the queue, per batch", ["model", "version"],
                       buckets=LATENCY_BUCKETS)
MODEL_DURATION = Histogram("shopserve_model_duration_seconds", "Time of one model call (a "
                           "batch)", ["model", "version"], buckets=LATENCY_BUCKETS)
QUEUE_DEPTH = Gauge("shopserve_queue_depth", "Rows waiting for a model call",
                    ["model", "version"], multiprocess_mode="livesum")
CANARY_WEIGHT = Gauge("shopserve_canary_weight", "Share of requests sent to the canary",
                      ["model", "version"], multiprocess_mode="livemax")
REPLICAS_DESIRED = Gauge("shopserve_replicas_desired", "Replicas the deployment asks for",
                         ["zone"], multiprocess_mode="livemax")
REPLICAS_UP = Gauge("shopserve_replicas_up", "Replica processes running", ["zone"],
                    multiprocess_mode="livemax")
REPLICAS_READY = Gauge("shopserve_replicas_ready", "Replicas warmed up and passing health "
                       "checks", ["zone"], multiprocess_mode="livemax")
# computed when /metrics is scraped (drift, feedback quality): added to every rendering
SCRAPE_COLLECTORS: list[Collector] = []
FEEDBACK = Counter("shopserve_feedback_events", "Feedback events stored durably", ["event"])


@functools.cache
def requests(endpoint: str, model: str, version: str, status: int) -> BufferedCounter:
    """The counter child, looked up once (``labels()`` costs), counted in the process."""
    return BufferedCounter(REQUESTS.labels(endpoint, model, version, str(status)))


@functools.cache
def duration(endpoint: str, model: str) -> BufferedHistogram:
    return BufferedHistogram(DURATION.labels(endpoint, model), LATENCY_BUCKETS)


def queue_wait(model: str, version: str) -> BufferedHistogram:
    return BufferedHistogram(QUEUE_WAIT.labels(model, version), LATENCY_BUCKETS)


def model_duration(model: str, version: str) -> BufferedHistogram:
    return BufferedHistogram(MODEL_DURATION.labels(model, version), LATENCY_BUCKETS)


def render_scraped() -> bytes:
    """The scrape-time metrics (``SCRAPE_COLLECTORS``) in Prometheus text format."""
    if not SCRAPE_COLLECTORS:
        return b""
    registry = CollectorRegistry(auto_describe=False)
    for collector in SCRAPE_COLLECTORS:
        registry.register(collector)
    return bytes(generate_latest(registry))
