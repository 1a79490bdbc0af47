"""Metric buffers: the request path adds to plain numbers in the process, and ``flush`` moves
them into prometheus-client (the multiprocess files ``/metrics`` sums) about once a second.

A prometheus-client write in multiprocess mode takes a lock and writes an mmap'd file; done
per request it cost a measurable share of a replica's CPU (docs/monitoring.md). Here a request
costs an addition (counters) or a ``bisect`` and two additions (histograms).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

FLUSH_INTERVAL_S = 1.0
_BUFFERS: list[BufferedCounter | BufferedHistogram] = []
_LOCK = threading.Lock()  # threaded batchers count from a worker thread; uncontended, ~0.1 µs


class BufferedCounter:
    """``inc`` like a prometheus counter child; the total reaches ``child`` on ``flush``."""

    __slots__ = ("child", "value")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.value = 0.0
        _BUFFERS.append(self)

    def inc(self, amount: float = 1.0) -> None:
        with _LOCK:
            self.value += amount

    def flush(self) -> None:
        with _LOCK:
            value, self.value = self.value, 0.0
        if value:
            self.child.inc(value)


class BufferedHistogram:
    """``observe`` like a prometheus histogram child: bucket counts in a list, and a sum."""

    __slots__ = ("bounds", "child", "counts", "total")

    def __init__(self, child: Any, bounds: Sequence[float]) -> None:
        self.child = child
        self.bounds = tuple(float(b) for b in bounds)  # upper bounds, +Inf implied
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
        if len(child._buckets) != len(self.counts):  # prometheus-client's bucket children
            raise ValueError(f"histogram has {len(child._buckets)} buckets, expected "
                             f"{len(self.counts)}")
        _BUFFERS.append(self)

    def observe(self, amount: float) -> None:
        index = bisect_left(self.bounds, amount)  # the first bound >= amount: its "le" bucket
        with _LOCK:
            self.counts[index] += 1
            self.total += amount

    def flush(self) -> None:
        with _LOCK:
            counts, self.counts = self.counts, [0] * len(self.counts)
            total, self.total = self.total, 0.0
        if not any(counts):
            return
        # prometheus-client has no bulk observe; its child keeps one value per bucket
        for bucket, count in zip(self.child._buckets, counts, strict=True):
            if count:
                bucket.inc(count)
        self.child._sum.inc(total)


def release(*buffers: BufferedCounter | BufferedHistogram) -> None:
    """Flush and forget ``buffers`` (a version unloaded from this process)."""
    for buffer in buffers:
        buffer.flush()
        with contextlib.suppress(ValueError):
            _BUFFERS.remove(buffer)


def flush() -> None:
    """Every buffered count of this process into prometheus-client."""
    for buffer in list(_BUFFERS):
        buffer.flush()


async def flush_periodically(interval_s: float = FLUSH_INTERVAL_S) -> None:
    """Flush every ``interval_s`` until cancelled, and once more when cancelled."""
    try:
        while True:
            await asyncio.sleep(interval_s)
            flush()
    finally:
        with contextlib.suppress(Exception):
            flush()
