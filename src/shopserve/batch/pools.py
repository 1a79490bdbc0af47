"""Worker processes that read, score and write their own chunks of a Parquet input.

This process only hands out spans of chunk indexes over a queue and counts finished parts, so
on a machine with as many cores as workers it does not compete with them for CPU.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import time
from collections.abc import Iterator, Sequence
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import pyarrow as pa

from shopserve.batch.chunk_plans import ParquetPlan, PlannedChunk, SpanReader, split_spans
from shopserve.batch.engines import READY_TIMEOUT_S, InlineEngine
from shopserve.batch.scoring import ScorerSource
from shopserve.batch.sources import Chunk
from shopserve.errors import ShopserveError

POLL_S = 0.5  # how often a waiting parent checks that its workers are still alive


class ReadingPoolEngine:
    """``workers`` processes, each with its own reader, ONNX Runtime session (one intra-op
    thread) and part writer. Spans of consecutive chunks are queued in input order; each worker
    takes the next one when it is free, so a slower worker simply takes fewer."""

    def __init__(self, source: ScorerSource, work: Path, workers: int, plan: ParquetPlan) -> None:
        self.source, self.work, self.workers, self.plan = source, work, workers, plan
        self.finished = False
        self.checked = 0.0  # when the workers were last seen alive
        context = multiprocessing.get_context("spawn")
        self.tasks: Any = context.Queue()
        self.results: Any = context.Queue()
        self.procs: list[BaseProcess] = [
            context.Process(target=_serve, name=f"shopserve-batch-worker-{i}", daemon=True,
                            args=(source, work, plan, self.tasks, self.results, os.getpid()))
            for i in range(workers)]

    def start(self) -> None:
        """Start the workers and wait until each has built its scorer."""
        for proc in self.procs:
            proc.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        for _ in self.procs:
            self._next("ready", deadline)

    def run(self, todo: Sequence[PlannedChunk]) -> Iterator[tuple[int, int]]:
        """Score every chunk of ``todo``; yield (rows scored, rows bad) as each part is written."""
        for span in split_spans(todo, self.workers):
            self.tasks.put(span)
        for _ in self.procs:
            self.tasks.put(None)
        for _ in todo:
            message = self._next("done", None)
            yield int(message[1]), int(message[2])
        self.finished = True

    def close(self) -> None:
        """Wait for workers that were told to stop; end any that are still busy (after an error)."""
        for proc in self.procs:
            if proc.pid is None:
                continue
            if not self.finished:
                proc.terminate()
            proc.join(timeout=5.0)
            if proc.exitcode is None:
                proc.terminate()
                proc.join()
        for channel in (self.tasks, self.results):
            channel.cancel_join_thread()
            channel.close()

    def _next(self, kind: str, deadline: float | None) -> tuple[Any, ...]:
        while True:
            # Checked even while messages keep coming: the others' parts must not hide a death.
            if time.monotonic() - self.checked >= POLL_S:
                self._check_alive(kind, deadline)
                self.checked = time.monotonic()
            try:
                message: tuple[Any, ...] = self.results.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if message[0] == "error":
                raise message[1]
            if message[0] != kind:
                raise ShopserveError(f"batch worker sent {message[0]!r} while {kind!r} was due")
            return message

    def _check_alive(self, kind: str, deadline: float | None) -> None:
        for proc in self.procs:
            if proc.exitcode is not None and (proc.exitcode != 0 or kind == "ready"):
                raise ShopserveError(f"batch worker {proc.pid} ended with exit code "
                                     f"{proc.exitcode} before its work was done")
        if all(proc.exitcode is not None for proc in self.procs):
            raise ShopserveError("every batch worker ended before the job's chunks were done")
        if deadline is not None and time.monotonic() > deadline:
            raise ShopserveError(f"batch workers did not load the model in {READY_TIMEOUT_S:.0f}s")


def _serve(source: ScorerSource, work: Path, plan: ParquetPlan, tasks: Any, results: Any,
           parent: int) -> None:
    """A worker's life: build the scorer, then read, score and write spans until told to stop."""
    pa.set_cpu_count(1)  # Arrow's own threads would compete with the other workers
    try:
        scorer = source.build()
    except BaseException as exc:
        results.put(("error", _portable(exc)))
        return
    results.put(("ready",))
    reader = SpanReader(plan)

    def chunks() -> Iterator[Chunk]:
        while True:
            span = tasks.get()
            if span is None or os.getppid() != parent:  # done, or the parent is gone
                return
            yield from reader.read(*span)

    try:
        for rows, bad in InlineEngine(source, work, scorer).run(chunks()):
            results.put(("done", rows, bad))
    except BaseException as exc:
        results.put(("error", _portable(exc)))


def _portable(exc: BaseException) -> BaseException:
    """``exc`` itself when it survives pickling to the parent, else a ``ShopserveError``."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return ShopserveError(f"batch worker failed: {type(exc).__name__}: {exc}")
    return exc
