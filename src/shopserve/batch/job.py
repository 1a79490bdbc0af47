"""The batch predict job: check everything first, score chunks into parts, resume, publish.

A hidden work folder next to the output holds parts and a progress manifest; rerunning the same
command after a crash scores only the missing chunks, and the output appears in one rename.
"""

from __future__ import annotations

import enum
import shutil
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import orjson
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from shopserve.batch.engines import Engine, InlineEngine, ProcessEngine
from shopserve.batch.metrics import batch_metrics
from shopserve.batch.predictors import PredictorSource
from shopserve.batch.progress import ProgressReporter
from shopserve.batch.scoring import ChunkColumns, read_types
from shopserve.batch.sinks import assemble, atomic_write_bytes, done_parts, merge_errors
from shopserve.batch.sources import InputSet, format_of
from shopserve.errors import ConflictError, UsageError
from shopserve.runtime.onnx import SessionSettings
from shopserve.types import ModelKind

MANIFEST = "progress.json"


class EngineKind(enum.StrEnum):
    LOCAL = "local"


class PredictJobSpec(BaseModel):
    """One ``batch predict`` run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    input: Path
    output: Path
    workers: int = Field(default=1, ge=1, le=256)
    batch_size: int = Field(default=4096, ge=1, le=1_000_000)
    id_column: str | None = None
    label_column: str | None = None
    group_column: str | None = None
    k: int = Field(default=10, ge=1)
    register_metrics: bool = False
    overwrite: bool = False
    restart: bool = False
    engine: EngineKind = EngineKind.LOCAL

    @property
    def columns(self) -> ChunkColumns:
        return ChunkColumns(self.id_column, self.label_column, self.group_column)


class BatchSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    output: Path
    errors_path: Path
    metrics_path: Path | None
    rows: int
    bad_rows: int
    chunks: int
    resumed_chunks: int
    seconds: float
    metrics: dict[str, float]


def resolve_model(ref: str) -> PredictorSource:
    """A plain ``.onnx`` file, or a registry reference such as ``ctr@production``."""
    path = Path(ref)
    if path.suffix == ".onnx":
        if not path.is_file():
            raise UsageError(f"model file {path} does not exist")
        return PredictorSource(str(path.resolve()), ModelKind.GENERIC,
                               {"model.onnx": str(path.resolve())}, {"graph": "model.onnx"},
                               SessionSettings())
    from shopserve.registry import Registry

    loaded = Registry.open().load(ref)
    meta = loaded.meta
    return PredictorSource(meta.ref, meta.kind, {k: str(v) for k, v in loaded.files.items()},
                           dict(meta.config), SessionSettings())


def _paths(output: Path) -> tuple[Path, Path, Path]:
    stem = output.name.removesuffix(output.suffix) if output.suffix else output.name
    return (output.with_name(f".{output.name}.batch-work"),
            output.with_name(f"{stem}.errors.jsonl"), output.with_name(f"{stem}.metrics.json"))


def _check_columns(inputs: InputSet, needed: list[str]) -> None:
    for path, names in zip(inputs.files, inputs.columns(), strict=True):
        missing = [c for c in needed if c not in names]
        if missing:
            raise UsageError(f"{path}: missing column(s) {missing} needed by the model or "
                             f"the job; the file has {names}")


def _prepare_work(spec: PredictJobSpec, work: Path, fingerprint: dict[str, Any]) -> None:
    if spec.output.exists() and not spec.overwrite:
        raise ConflictError(f"{spec.output} already exists; pass --overwrite to replace it")
    manifest = work / MANIFEST
    if work.exists() and (spec.restart or not manifest.is_file()):
        shutil.rmtree(work)
    if work.exists():
        previous = orjson.loads(manifest.read_bytes())
        if previous.get("fingerprint") != fingerprint:
            raise ConflictError(f"{work} holds an unfinished job with other inputs, model or "
                                f"options; rerun it as it was, or pass --restart to drop it")
        return
    work.mkdir(parents=True)
    atomic_write_bytes(manifest, orjson.dumps({"fingerprint": fingerprint, "chunks": None}))


def run_predict(spec: PredictJobSpec, stream: TextIO | None = None) -> BatchSummary:
    """Run (or resume) a batch predict job and return what it did."""
    started = time.monotonic()
    if spec.register_metrics and (spec.model.endswith(".onnx") or not spec.label_column):
        raise UsageError("--register-metrics needs a registry model and --label-column")
    source = resolve_model(spec.model)
    predictor = source.build()
    inputs = InputSet.discover(spec.input)
    cols = spec.columns
    types = read_types(predictor, cols)
    _check_columns(inputs, list(types))
    if spec.output.suffix:
        format_of(spec.output)  # refuse an unknown output type before any work
    work, errors_path, metrics_path = _paths(spec.output)
    fingerprint = {"model": source.ref, "files": _file_sizes(source),
                   "input": inputs.fingerprint(), "batch_size": spec.batch_size,
                   "columns": list(types), "output": str(spec.output)}
    _prepare_work(spec, work, fingerprint)
    already = done_parts(work)
    engine: Engine = (InlineEngine(predictor, cols, work) if spec.workers == 1
                      else ProcessEngine(source, cols, work, spec.workers))
    progress = ProgressReporter(inputs.total_rows(), stream=stream)
    count = 0

    def todo() -> Any:
        nonlocal count
        for chunk in inputs.chunks(spec.batch_size, types):
            count = chunk.index + 1
            if chunk.index in already:
                progress.done += chunk.batch.num_rows
                progress.resumed += chunk.batch.num_rows
                continue
            yield chunk

    for rows, bad in engine.run(todo()):
        progress.advance(rows + bad, bad)
    progress.finish()
    if spec.output.exists():
        shutil.rmtree(spec.output) if spec.output.is_dir() else spec.output.unlink()
    rows = assemble(work, count, spec.output, format_of(spec.output) if spec.output.suffix
                    else None, inputs.fmt)
    bad_rows = merge_errors(work, count, errors_path)
    metrics = _metrics(spec, work, count, source, metrics_path)
    shutil.rmtree(work)
    return BatchSummary(output=spec.output, errors_path=errors_path,
                        metrics_path=metrics_path if metrics else None, rows=rows,
                        bad_rows=bad_rows, chunks=count, resumed_chunks=len(already),
                        seconds=time.monotonic() - started, metrics=metrics)


def _file_sizes(source: PredictorSource) -> dict[str, int]:
    return {name: Path(p).stat().st_size for name, p in sorted(source.files.items())}


def _metrics(spec: PredictJobSpec, work: Path, count: int, source: PredictorSource,
             path: Path) -> dict[str, float]:
    if not spec.label_column:
        return {}
    labels, scores, groups = [], [], []
    for i in range(count):
        table = pq.read_table(work / f"part-{i:08d}.parquet")
        outputs = [n for n in table.schema.names
                   if n not in (spec.id_column or "row", spec.label_column, spec.group_column)]
        if table.num_rows == 0 or not outputs:
            continue
        labels.append(table.column(spec.label_column).to_numpy())
        scores.append(np.asarray(table.column(outputs[0]).to_numpy(), dtype=np.float64))
        if spec.group_column:
            groups.append(np.asarray(table.column(spec.group_column).to_pylist(), dtype=object))
    metrics = batch_metrics(np.concatenate(labels) if labels else np.zeros(0),
                            np.concatenate(scores) if scores else np.zeros(0), spec.k,
                            np.concatenate(groups) if groups else None)
    from shopserve.data import data_hash

    digest = data_hash(spec.input)
    atomic_write_bytes(path, orjson.dumps({"model": source.ref, "data_hash": digest,
                                           "metrics": metrics}, option=orjson.OPT_INDENT_2))
    if spec.register_metrics:
        from shopserve.registry import Registry

        Registry.open().update_metrics(source.ref, metrics, data_hash=digest)
    return metrics
