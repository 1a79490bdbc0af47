"""``batch predict --engine ray``: the same job on Ray Data, with the same parts and output.

The driver splits Parquet inputs into exactly the chunks the local engine makes (from file
metadata, without reading rows); Ray Data actors, one session each, read their chunk's rows,
score them with the same ``PredictScorer`` and send the finished part back to the driver, which
resumes, publishes and measures as the local engine does.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from shopserve.batch.job import BatchSummary, PredictJobSpec, _metrics, file_sizes, resolve_model
from shopserve.batch.predictors import PredictorSource
from shopserve.batch.progress import ProgressReporter
from shopserve.batch.runner import RunResult, RunSettings, prepare_work, work_paths
from shopserve.batch.scoring import PredictScorerSource, read_types
from shopserve.batch.sinks import ERRORS_KEY, done_parts, part_path, publish
from shopserve.batch.sources import Chunk, FileFormat, InputSet, check_columns, format_of
from shopserve.errors import UsageError
from shopserve.runtime import ray as ray_rt


def plan_chunks(inputs: InputSet, batch_size: int) -> list[dict[str, Any]]:
    """The local engine's chunks (never across files, ``batch_size`` rows but a file's last)."""
    if inputs.fmt is not FileFormat.PARQUET:
        raise UsageError(f"--engine ray reads Parquet inputs; {inputs.files[0]} is "
                         f"{inputs.fmt.value} (convert it, or use the local engine)")
    plan, index, start = [], 0, 0
    for path in inputs.files:
        rows = int(pq.ParquetFile(path).metadata.num_rows)
        for offset in range(0, rows, batch_size):
            n = min(batch_size, rows - offset)
            plan.append({"index": index, "start": start, "path": str(path.resolve()),
                         "offset": offset, "rows": n})
            index, start = index + 1, start + n
    return plan


def read_rows(path: str, offset: int, rows: int, columns: list[str]) -> pa.RecordBatch:
    """Rows ``offset .. offset + rows`` of a Parquet file, reading only the row groups needed."""
    file = pq.ParquetFile(path)
    groups, first, pos = [], None, 0
    for g in range(file.metadata.num_row_groups):
        n = file.metadata.row_group(g).num_rows
        if pos < offset + rows and pos + n > offset:
            groups.append(g)
            first = pos if first is None else first
        pos += n
    table = file.read_row_groups(groups, columns=columns).slice(offset - (first or 0), rows)
    batches = table.combine_chunks().to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)


def part_bytes(table: pa.Table, errors: list[dict[str, object]]) -> bytes:
    """A part file's bytes, exactly as ``write_part`` writes them."""
    meta = dict(table.schema.metadata or {})
    meta[ERRORS_KEY] = b"".join(orjson.dumps(e) + b"\n" for e in errors)
    sink = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(meta), sink)
    return sink.getvalue()


class ChunkActor:
    """One Ray Data actor: model artifacts fetched and verified once, one session, many chunks."""

    def __init__(self, source: PredictorSource, shipped: dict[str, ray_rt.ShippedFile],
                 scorer_args: tuple[Any, ...]) -> None:
        files = {name: str(p) for name, p in ray_rt.fetch_files(shipped).items()}
        local = PredictorSource(source.ref, source.kind, files, source.config, source.settings)
        self.scorer = PredictScorerSource(local, scorer_args[0]).build()
        self.columns: list[str] = list(scorer_args[1])

    def __call__(self, batch: pa.Table) -> pa.Table:
        out: dict[str, list[Any]] = {"index": [], "rows": [], "bad": [], "part": []}
        for item in batch.to_pylist():
            rows = read_rows(item["path"], item["offset"], item["rows"], self.columns)
            scored = self.scorer.score(Chunk(item["index"], item["start"], rows, {}))
            out["index"].append(item["index"])
            out["rows"].append(scored.table.num_rows)
            out["bad"].append(len(scored.errors))
            out["part"].append(part_bytes(scored.table, scored.errors))
        return pa.table(out)


def run_predict_on_ray(spec: PredictJobSpec, address: str | None = None,
                       stream: TextIO | None = None,
                       actor_cpus: float | None = None) -> BatchSummary:
    """``run_predict`` with Ray Data actors (``spec.workers`` of them) in place of processes;
    each reserves ``actor_cpus`` (``SHOPSERVE_RAY_ACTOR_CPUS``, else 1)."""
    started = time.monotonic()
    if spec.register_metrics and (spec.model.endswith(".onnx") or not spec.label_column):
        raise UsageError("--register-metrics needs a registry model and --label-column")
    source = resolve_model(spec.model)
    cols = spec.columns
    types = read_types(source.build(), cols)
    inputs = InputSet.discover(spec.input)
    check_columns(inputs, list(types))
    plan = plan_chunks(inputs, spec.batch_size)
    out_format = format_of(spec.output) if spec.output.suffix else None
    settings = RunSettings(
        output=spec.output, out_format=out_format, dir_format=inputs.fmt, workers=spec.workers,
        overwrite=spec.overwrite, restart=spec.restart, total_rows=inputs.total_rows(),
        fingerprint={"job": "predict", "model": source.ref, "files": file_sizes(source),
                     "input": inputs.fingerprint(), "batch_size": spec.batch_size,
                     "columns": list(types), "output": str(spec.output)})
    work = prepare_work(settings)
    already = done_parts(work)
    progress = ProgressReporter(settings.total_rows, stream=stream)
    for item in plan:
        if item["index"] in already:
            progress.skip(item["rows"])
    started_ray = ray_rt.connect(address)
    try:
        shipped = ray_rt.ship_files({n: Path(p) for n, p in source.files.items()},
                                    _records(source))
        ready = time.monotonic()
        progress.restart_clock()
        todo = [item for item in plan if item["index"] not in already]
        cpus = actor_cpus or float(os.environ.get("SHOPSERVE_RAY_ACTOR_CPUS") or 1.0)
        data = ray_rt.DataSettings(actors=spec.workers, num_cpus=cpus)
        for row in _scored(todo, source, shipped, (cols, types), data):
            _write(work, int(row["index"]), row["part"])
            progress.advance(int(row["rows"]) + int(row["bad"]), int(row["bad"]))
        progress.finish()
    finally:
        if started_ray:
            ray_rt.disconnect()
    scored_at = time.monotonic()
    if spec.output.exists():
        shutil.rmtree(spec.output) if spec.output.is_dir() else spec.output.unlink()
    errors_path = work_paths(spec.output)[1]
    rows, bad = publish(work, len(plan), spec.output, out_format, inputs.fmt, errors_path)
    result = RunResult(work=work, errors_path=errors_path, rows=rows, bad_rows=bad,
                       chunks=len(plan), resumed_chunks=len(already & set(range(len(plan)))),
                       scored_rows=progress.done - progress.resumed,
                       startup_seconds=ready - started, scoring_seconds=scored_at - ready,
                       publish_seconds=time.monotonic() - scored_at)
    metrics_path = work_paths(spec.output)[2]
    metrics = _metrics(spec, result, source, metrics_path)
    shutil.rmtree(work)
    return BatchSummary.of(result, spec.output, started, metrics=metrics,
                           metrics_path=metrics_path if metrics else None)


def _scored(todo: list[dict[str, Any]], source: PredictorSource,
            shipped: dict[str, ray_rt.ShippedFile], scorer_args: tuple[Any, ...],
            data: ray_rt.DataSettings) -> Iterator[dict[str, Any]]:
    if not todo:
        return iter(())
    return ray_rt.map_items(todo, ChunkActor, (source, shipped, scorer_args), data)


def _records(source: PredictorSource) -> dict[str, tuple[str, int]] | None:
    """The registry's checksums of a registry model (a plain .onnx file has none)."""
    if source.ref.endswith(".onnx"):
        return None
    from shopserve.registry import Registry

    meta = Registry.open().get(source.ref)
    return {n: (r.sha256, r.size) for n, r in meta.files.items()}


def _write(work: Path, index: int, data: bytes) -> None:
    tmp = work / f".part-{index:08d}.parquet.tmp-{os.getpid()}"
    tmp.write_bytes(data)
    os.replace(tmp, part_path(work, index))
