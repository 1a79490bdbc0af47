"""Where chunks are scored: in this process, or in worker processes with a session each.

Reading, scoring and writing overlap: a reader thread decodes the next chunks while the current
one is scored (Arrow and ONNX Runtime release the GIL). Chunks travel to worker processes as Arrow
IPC buffers, and each worker writes its own parts. The ``Engine`` protocol is the seam for others.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pyarrow as pa

from shopserve.batch.scoring import ChunkScorer, ScorerSource
from shopserve.batch.sinks import write_part
from shopserve.batch.sources import Chunk

T = TypeVar("T")
PREFETCH = 2  # chunks decoded ahead of the scorer: enough to hide I/O, little memory
READY_TIMEOUT_S = 300.0


class Engine(Protocol):
    def start(self) -> None:
        """Load the model (and start workers): everything before the first chunk."""
        ...

    def run(self, chunks: Iterator[Chunk]) -> Iterator[tuple[int, int]]:
        """Score and write every chunk; yield (rows scored, rows bad) as each one is done."""
        ...

    def close(self) -> None: ...


def process_chunk(scorer: ChunkScorer, chunk: Chunk, work: Path) -> tuple[int, int]:
    scored = scorer.score(chunk)
    write_part(work, chunk.index, scored.table, scored.errors)
    return scored.table.num_rows, len(scored.errors)


def prefetch(items: Iterator[T], depth: int = PREFETCH) -> Iterator[T]:
    """``items`` produced by a background thread, at most ``depth`` ahead of the consumer."""
    slots: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def fill() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(("error", exc))

    thread = threading.Thread(target=fill, name="shopserve-batch-reader", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()


class InlineEngine:
    """One session in this process; a reader thread and a writer thread keep it busy."""

    def __init__(self, source: ScorerSource, work: Path,
                 scorer: ChunkScorer | None = None) -> None:
        self.source, self.work, self.scorer = source, work, scorer

    def start(self) -> None:
        if self.scorer is None:
            self.scorer = self.source.build()

    def run(self, chunks: Iterator[Chunk]) -> Iterator[tuple[int, int]]:
        if self.scorer is None:
            self.start()
        assert self.scorer is not None
        with ThreadPoolExecutor(1, thread_name_prefix="shopserve-batch-writer") as writer:
            pending: deque[Future[tuple[int, int]]] = deque()
            for chunk in prefetch(chunks):
                scored = self.scorer.score(chunk)
                pending.append(writer.submit(_write, self.work, chunk.index, scored.table,
                                             scored.errors))
                while len(pending) > PREFETCH or (pending and pending[0].done()):
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def close(self) -> None:
        self.scorer = None


def _write(work: Path, index: int, table: pa.Table,
           errors: list[dict[str, object]]) -> tuple[int, int]:
    write_part(work, index, table, errors)
    return table.num_rows, len(errors)


_WORKER: tuple[ChunkScorer, Path] | None = None
_BARRIER: Any = None


def _init_worker(source: ScorerSource, work: Path, barrier: Any) -> None:
    global _WORKER, _BARRIER
    _WORKER, _BARRIER = (source.build(), work), barrier


def _ready() -> int:
    """Blocks until every worker has built its scorer, so each one answers exactly once."""
    _BARRIER.wait(READY_TIMEOUT_S)
    return 0


def _run_in_worker(index: int, start: int, data: pa.Buffer, bad: dict[int, str]) -> tuple[int, int]:
    assert _WORKER is not None, "worker used before its initializer ran"
    scorer, work = _WORKER
    batch = pa.ipc.open_stream(data).read_next_batch()  # zero-copy view of the received bytes
    return process_chunk(scorer, Chunk(index, start, batch, bad), work)


def to_ipc(batch: pa.RecordBatch) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue()


class ProcessEngine:
    """``workers`` processes, each with its own ONNX Runtime session (one intra-op thread);
    a bounded number of chunks in flight keeps memory flat whatever the input size."""

    def __init__(self, source: ScorerSource, work: Path, workers: int) -> None:
        self.source, self.work, self.workers = source, work, workers
        self.pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(self.workers)
        self.pool = ProcessPoolExecutor(self.workers, mp_context=context,
                                        initializer=_init_worker,
                                        initargs=(self.source, self.work, barrier))
        started = time.monotonic()
        ready = [self.pool.submit(_ready) for _ in range(self.workers)]
        for future in ready:
            future.result(timeout=max(READY_TIMEOUT_S - (time.monotonic() - started), 1.0))

    def run(self, chunks: Iterator[Chunk]) -> Iterator[tuple[int, int]]:
        if self.pool is None:
            self.start()
        assert self.pool is not None
        pending: set[Future[tuple[int, int]]] = set()
        for chunk in prefetch(chunks):
            pending.add(self.pool.submit(_run_in_worker, chunk.index, chunk.start,
                                         to_ipc(chunk.batch), chunk.bad))
            if len(pending) >= 2 * self.workers:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (f.result() for f in finished)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            yield from (f.result() for f in finished)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
