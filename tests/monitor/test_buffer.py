"""Buffered metrics: counted in the process, the same numbers in Prometheus text once flushed."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from shopserve.monitor.buffer import BufferedCounter, BufferedHistogram, flush, release

BOUNDS = (0.001, 0.01, 0.1, 1.0)


def text(registry: CollectorRegistry) -> list[str]:
    return [line for line in generate_latest(registry).decode().splitlines()
            if "_created" not in line]


def test_flushed_histograms_and_counters_read_like_direct_writes() -> None:
    direct, buffered = CollectorRegistry(), CollectorRegistry()
    d_hist = Histogram("t_seconds", "t", ["m"], buckets=BOUNDS, registry=direct)
    b_hist = Histogram("t_seconds", "t", ["m"], buckets=BOUNDS, registry=buffered)
    d_count = Counter("t_requests", "t", ["m"], registry=direct)
    b_count = Counter("t_requests", "t", ["m"], registry=buffered)
    hist = BufferedHistogram(b_hist.labels("x"), BOUNDS)
    count = BufferedCounter(b_count.labels("x"))
    rng = random.Random(3)
    values = [rng.choice([0.0, 0.001, 0.01, 0.1, 1.0, 5.0]) * rng.random() for _ in range(500)]
    values += list(BOUNDS)  # exactly on a bound: counted in that bound's bucket ("le")
    for v in values:
        d_hist.labels("x").observe(v)
        d_count.labels("x").inc()
        hist.observe(v)
        count.inc()
    assert b"t_requests_total{m=\"x\"} 0.0" in generate_latest(buffered)  # not yet flushed
    flush()
    assert text(buffered) == text(direct)
    flush()  # nothing new: nothing counted twice
    assert text(buffered) == text(direct)
    release(hist, count)
    count.inc()
    flush()  # a released buffer is no longer flushed
    assert text(buffered) == text(direct)
