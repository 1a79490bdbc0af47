"""Where chunks are scored: in this process, or in worker processes with a session each.

The ``Engine`` protocol is the seam for other engines (Ray Data); each must write the same parts.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Protocol

from shopserve.batch.predictors import Predictor, PredictorSource
from shopserve.batch.scoring import ChunkColumns, score_chunk
from shopserve.batch.sinks import write_part
from shopserve.batch.sources import Chunk


class Engine(Protocol):
    def run(self, chunks: Iterator[Chunk]) -> Iterator[tuple[int, int]]:
        """Score and write every chunk; yield (rows scored, rows bad) as each one is done."""
        ...


def process_chunk(predictor: Predictor, chunk: Chunk, cols: ChunkColumns,
                  work: Path) -> tuple[int, int]:
    scored = score_chunk(predictor, chunk, cols)
    write_part(work, chunk.index, scored.table, scored.errors)
    return scored.table.num_rows, len(scored.errors)


class InlineEngine:
    """One session in this process: no copies between processes, the least overhead."""

    def __init__(self, predictor: Predictor, cols: ChunkColumns, work: Path) -> None:
        self.predictor, self.cols, self.work = predictor, cols, work

    def run(self, chunks: Iterator[Chunk]) -> Iterator[tuple[int, int]]:
        for chunk in chunks:
            yield process_chunk(self.predictor, chunk, self.cols, self.work)


_WORKER: tuple[Predictor, ChunkColumns, Path] | None = None


def _init_worker(source: PredictorSource, cols: ChunkColumns, work: Path) -> None:
    global _WORKER
    _WORKER = (source.build(), cols, work)


def _run_in_worker(chunk: Chunk) -> tuple[int, int]:
    assert _WORKER is not None, "worker used before its initializer ran"
    predictor, cols, work = _WORKER
    return process_chunk(predictor, chunk, cols, work)


class ProcessEngine:
    """``workers`` processes, each with its own ONNX Runtime session; a bounded queue of chunks
    keeps memory flat whatever the input size."""

    def __init__(self, source: PredictorSource, cols: ChunkColumns, work: Path,
                 workers: int) -> None:
        self.source, self.cols, self.work, self.workers = source, cols, work, workers

    def run(self, chunks: Iterator[Chunk]) -> Iterator[tuple[int, int]]:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_worker,
                                 initargs=(self.source, self.cols, self.work)) as pool:
            pending: set[Future[tuple[int, int]]] = set()
            for chunk in chunks:
                pending.add(pool.submit(_run_in_worker, chunk))
                if len(pending) >= 2 * self.workers:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    yield from (f.result() for f in finished)
            for future in pending:
                yield future.result()
