"""Size, latency and throughput of one graph, measured the same way for parent and children:
one session, warm-up first, then timed runs on real input rows tiled to each batch size.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from shopserve.optimize.calibration import tile_rows
from shopserve.runtime.onnx import OnnxModel, SessionSettings


class SpeedSettings(BaseModel):
    """How long to time each batch size; bounded so a report takes seconds, not minutes."""

    model_config = ConfigDict(frozen=True)

    batch_sizes: tuple[int, ...] = (1, 32, 256)
    warmup: int = Field(default=3, ge=0)
    min_runs: int = Field(default=5, ge=1)
    seconds_per_batch: float = Field(default=0.4, gt=0)


class SpeedResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    latency_ms: dict[int, float]  # median milliseconds per call, by batch size
    throughput: dict[int, float]  # rows per second, by batch size


def time_calls(model: OnnxModel, feed: Mapping[str, np.ndarray],
               settings: SpeedSettings) -> list[float]:
    for _ in range(settings.warmup):
        model.run(feed, check=False)
    times: list[float] = []
    deadline = time.perf_counter() + settings.seconds_per_batch
    while len(times) < settings.min_runs or time.perf_counter() < deadline:
        start = time.perf_counter()
        model.run(feed, check=False)
        times.append(time.perf_counter() - start)
    return times


def measure_speed(graph: Path, rows: Mapping[str, np.ndarray], session: SessionSettings,
                  settings: SpeedSettings | None = None) -> SpeedResult:
    """Median latency and rows/s of ``graph`` at each batch size, on ``rows`` tiled."""
    settings = settings or SpeedSettings()
    model = OnnxModel(graph, session)
    latency: dict[int, float] = {}
    throughput: dict[int, float] = {}
    for size in settings.batch_sizes:
        feed = model.check_inputs(tile_rows(rows, size))
        median = float(np.median(time_calls(model, feed, settings)))
        latency[size] = median * 1e3
        throughput[size] = size / median if median > 0 else float("inf")
    return SpeedResult(latency_ms=latency, throughput=throughput)


def compare_throughput(graphs: Sequence[Path], rows: Mapping[str, np.ndarray], batch: int,
                       session: SessionSettings, rounds: int = 5,
                       seconds: float = 0.3) -> list[float]:
    """Rows/s of each graph, timed in interleaved rounds so machine noise hits all alike."""
    models = [OnnxModel(g, session) for g in graphs]
    feed = models[0].check_inputs(tile_rows(rows, batch))
    settings = SpeedSettings(seconds_per_batch=seconds)
    samples: list[list[float]] = [[] for _ in graphs]
    for _ in range(rounds):
        for i, model in enumerate(models):
            samples[i].extend(time_calls(model, feed, settings))
    return [batch / float(np.median(s)) for s in samples]
