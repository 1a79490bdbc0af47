"""What every batch job shares: the work folder, resume, engines, progress and publishing.

A hidden work folder next to the output holds parts and a progress manifest; rerunning the same
command after a crash scores only the missing chunks, and the output appears in one rename.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import orjson

from shopserve.batch.chunk_plans import ParquetPlan
from shopserve.batch.engines import Engine, InlineEngine, ProcessEngine
from shopserve.batch.pools import ReadingPoolEngine
from shopserve.batch.progress import ProgressReporter
from shopserve.batch.scoring import ChunkScorer, ScorerSource
from shopserve.batch.sinks import atomic_write_bytes, done_parts, publish
from shopserve.batch.sources import Chunk, FileFormat
from shopserve.errors import ConflictError

MANIFEST = "progress.json"


@dataclass(frozen=True)
class RunSettings:
    """Where a job writes, how it runs, and what identifies it for resuming."""

    output: Path
    out_format: FileFormat | None  # None: a folder of part files in ``dir_format``
    dir_format: FileFormat
    workers: int
    overwrite: bool
    restart: bool
    fingerprint: dict[str, Any]
    total_rows: int | None = None


@dataclass(frozen=True)
class RunResult:
    work: Path
    errors_path: Path
    rows: int
    bad_rows: int
    chunks: int
    resumed_chunks: int
    scored_rows: int  # input rows scored by this run (not resumed ones)
    startup_seconds: float  # model load and worker start
    scoring_seconds: float  # first chunk to last part written
    publish_seconds: float  # joining the parts into the output


def work_paths(output: Path) -> tuple[Path, Path, Path]:
    """The work folder, errors file and metrics file of an output."""
    stem = output.name.removesuffix(output.suffix) if output.suffix else output.name
    return (output.with_name(f".{output.name}.batch-work"),
            output.with_name(f"{stem}.errors.jsonl"), output.with_name(f"{stem}.metrics.json"))


def prepare_work(settings: RunSettings) -> Path:
    """A fresh or resumable work folder; refuses to resume a job with other inputs."""
    work = work_paths(settings.output)[0]
    if settings.output.exists() and not settings.overwrite:
        raise ConflictError(f"{settings.output} already exists; pass --overwrite to replace it")
    manifest = work / MANIFEST
    if work.exists() and (settings.restart or not manifest.is_file()):
        shutil.rmtree(work)
    if work.exists():
        previous = orjson.loads(manifest.read_bytes())
        if previous.get("fingerprint") != settings.fingerprint:
            raise ConflictError(f"{work} holds an unfinished job with other inputs, model or "
                                f"options; rerun it as it was, or pass --restart to drop it")
        return work
    work.mkdir(parents=True)
    atomic_write_bytes(manifest, orjson.dumps({"fingerprint": settings.fingerprint}))
    return work


def run_parts(settings: RunSettings, source: ScorerSource,
              chunks: Callable[[], Iterator[Chunk]], stream: TextIO | None = None,
              scorer: ChunkScorer | None = None, plan: ParquetPlan | None = None) -> RunResult:
    """Score every chunk not done yet into parts, then publish them as the output.

    ``scorer``, when the caller already built one, saves a second model load with one worker.
    ``plan``, the same chunks located in a Parquet input, lets several workers read their own
    rows; without it this process reads and sends each chunk to them.
    The work folder is left in place for the caller (metrics read the parts); remove it after.
    """
    started = time.monotonic()
    work = prepare_work(settings)
    already = done_parts(work)
    progress = ProgressReporter(settings.total_rows, stream=stream)
    if plan is not None and settings.workers > 1:
        count = len(plan.chunks)
        for done in (c for c in plan.chunks if c.index in already):
            progress.skip(done.rows)
        left = [c for c in plan.chunks if c.index not in already]
        pool = ReadingPoolEngine(source, work, min(settings.workers, len(left)), plan)
        ready = _drive(pool, lambda: pool.run(left), progress)
    else:
        seen = {"count": 0}

        def todo() -> Iterator[Chunk]:
            for chunk in chunks():
                seen["count"] = chunk.index + 1
                if chunk.index in already:
                    progress.skip(chunk.batch.num_rows)
                    continue
                yield chunk

        engine: Engine = (InlineEngine(source, work, scorer) if settings.workers == 1
                          else ProcessEngine(source, work, settings.workers))
        ready = _drive(engine, lambda: engine.run(todo()), progress)
        count = seen["count"]
    scored = time.monotonic()
    if settings.output.exists():
        shutil.rmtree(settings.output) if settings.output.is_dir() else settings.output.unlink()
    errors_path = work_paths(settings.output)[1]
    rows, bad_rows = publish(work, count, settings.output, settings.out_format,
                             settings.dir_format, errors_path)
    return RunResult(work=work, errors_path=errors_path, rows=rows, bad_rows=bad_rows,
                     chunks=count, resumed_chunks=len(already & set(range(count))),
                     scored_rows=progress.done - progress.resumed,
                     startup_seconds=ready - started, scoring_seconds=scored - ready,
                     publish_seconds=time.monotonic() - scored)


def _drive(engine: Engine | ReadingPoolEngine, results: Callable[[], Iterator[tuple[int, int]]],
           progress: ProgressReporter) -> float:
    """Start ``engine``, count its finished chunks, close it; returns when it was ready."""
    try:
        engine.start()
        ready = time.monotonic()
        progress.restart_clock()
        for rows, bad in results():
            progress.advance(rows + bad, bad)
        progress.finish()
    finally:
        engine.close()
    return ready
