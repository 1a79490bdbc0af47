"""The search space of ``shopserve tune``: candidate serving settings, a coarse first sweep over
process layouts, and the neighbours of a configuration that the refine step tries next.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

BATCH_SIZES = (1, 4, 8, 16, 32, 64, 128, 256)
QUEUE_DELAYS_MS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
START_BATCH = 32
START_DELAY_MS = 1.0


class Candidate(BaseModel):
    """One way to run the model on a machine."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    replicas: int = Field(ge=1)
    threads: int = Field(ge=1)  # ONNX Runtime intra-op threads per replica
    max_batch_size: int = Field(ge=1)
    max_queue_delay_ms: float = Field(ge=0)

    def label(self) -> str:
        return (f"replicas={self.replicas} threads={self.threads} batch={self.max_batch_size} "
                f"delay={self.max_queue_delay_ms:g}ms")


class LoadStep(BaseModel):
    """One load run against a candidate: closed loop (``offered_rps`` None) or open loop."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    offered_rps: float | None
    achieved_rps: float
    p50_ms: float | None  # None: nothing was answered
    p99_ms: float | None
    p999_ms: float | None
    errors: int
    passed: bool  # open loop: no errors, p99 within target, ≥ 95% of the offered rate answered


class Trial(BaseModel):
    """What one candidate measured: its saturation rate and the best rate that met the p99."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    candidate: Candidate
    saturation_rps: float  # closed loop, many connections
    capacity_rps: float  # highest open-loop rate that met the p99 with no errors (0: none did)
    p99_ms_at_capacity: float | None
    best_p99_ms: float | None  # the lowest p99 any of its steps saw (None: nothing answered)
    steps: list[LoadStep]
    seconds: float

    @property
    def meets(self) -> bool:
        return self.capacity_rps > 0


def layouts(cores: int) -> list[Candidate]:
    """The coarse sweep: every replicas × threads layout (powers of two) that fits ``cores``,
    at the middle batching setting, most replicas first (usually the fastest on CPUs)."""
    powers = [2**i for i in range(int(math.log2(max(cores, 1))) + 1)]
    if cores not in powers:
        powers.append(cores)
    out = [Candidate(replicas=r, threads=t, max_batch_size=START_BATCH,
                     max_queue_delay_ms=START_DELAY_MS)
           for r in powers for t in powers if r * t <= cores]
    return sorted(out, key=lambda c: (-c.replicas * c.threads, -c.replicas))


def neighbours(c: Candidate, cores: int) -> list[Candidate]:
    """One step along each axis: batch size ×/÷ 2-4, queue delay up or down, replicas ± 1."""
    out: list[Candidate] = []
    b = BATCH_SIZES.index(c.max_batch_size) if c.max_batch_size in BATCH_SIZES else 4
    for i in (b - 2, b + 2):
        if 0 <= i < len(BATCH_SIZES):
            out.append(c.model_copy(update={"max_batch_size": BATCH_SIZES[i]}))
    d = (QUEUE_DELAYS_MS.index(c.max_queue_delay_ms)
         if c.max_queue_delay_ms in QUEUE_DELAYS_MS else 2)
    for i in (d - 2, d + 1):
        if 0 <= i < len(QUEUE_DELAYS_MS):
            out.append(c.model_copy(update={"max_queue_delay_ms": QUEUE_DELAYS_MS[i]}))
    for r in (c.replicas - 1, c.replicas + 1):
        if r >= 1 and r * c.threads <= cores:
            out.append(c.model_copy(update={"replicas": r}))
    return out
