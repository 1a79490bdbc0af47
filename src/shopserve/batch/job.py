"""The batch predict job: check everything first, score chunks into parts, resume, publish.

Parts, resume and publishing are shared with the other jobs (``runner``); this module adds the
model's column checks and the quality metrics of labelled inputs.
"""

from __future__ import annotations

import enum
import shutil
import time
from pathlib import Path
from typing import TextIO

import numpy as np
import orjson
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from shopserve.batch.chunk_plans import plan_parquet
from shopserve.batch.metrics import batch_metrics
from shopserve.batch.predictors import PredictorSource
from shopserve.batch.runner import RunResult, RunSettings, run_parts, work_paths
from shopserve.batch.scoring import ChunkColumns, PredictScorer, PredictScorerSource, read_types
from shopserve.batch.sinks import atomic_write_bytes, part_path
from shopserve.batch.sources import InputSet, check_columns, format_of
from shopserve.errors import UsageError
from shopserve.runtime.onnx import SessionSettings
from shopserve.types import ModelKind

REGISTERED_PREFIX = "batch_"  # registered metrics never overwrite the version's own


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
    """What a batch job did, and how long each phase took."""

    model_config = ConfigDict(frozen=True)

    output: Path
    errors_path: Path
    metrics_path: Path | None
    rows: int
    bad_rows: int
    chunks: int
    resumed_chunks: int
    seconds: float
    startup_seconds: float = 0.0
    scoring_seconds: float = 0.0
    publish_seconds: float = 0.0
    scored_rows: int = 0
    metrics: dict[str, float] = Field(default_factory=dict)
    registered: str | None = None  # a version this job registered (``batch embed``)

    @classmethod
    def of(cls, result: RunResult, output: Path, started: float,
           **extra: object) -> BatchSummary:
        return cls.model_validate({
            "output": output, "errors_path": result.errors_path, "rows": result.rows,
            "bad_rows": result.bad_rows, "chunks": result.chunks,
            "resumed_chunks": result.resumed_chunks, "scored_rows": result.scored_rows,
            "seconds": time.monotonic() - started, "startup_seconds": result.startup_seconds,
            "scoring_seconds": result.scoring_seconds,
            "publish_seconds": result.publish_seconds, "metrics_path": None, **extra})


def resolve_model(ref: str, settings: SessionSettings | None = None) -> PredictorSource:
    """A plain ``.onnx`` file, or a registry reference such as ``ctr@production``."""
    settings = settings or SessionSettings()
    path = Path(ref)
    if path.suffix == ".onnx":
        if not path.is_file():
            raise UsageError(f"model file {path} does not exist")
        return PredictorSource(str(path.resolve()), ModelKind.GENERIC,
                               {"model.onnx": str(path.resolve())}, {"graph": "model.onnx"},
                               settings)
    from shopserve.registry import Registry

    loaded = Registry.open().load(ref)
    meta = loaded.meta
    return PredictorSource(meta.ref, meta.kind, {k: str(v) for k, v in loaded.files.items()},
                           dict(meta.config), settings)


def file_sizes(source: PredictorSource) -> dict[str, int]:
    return {name: Path(p).stat().st_size for name, p in sorted(source.files.items())}


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
    check_columns(inputs, list(types))
    out_format = format_of(spec.output) if spec.output.suffix else None
    settings = RunSettings(
        output=spec.output, out_format=out_format, dir_format=inputs.fmt, workers=spec.workers,
        overwrite=spec.overwrite, restart=spec.restart, total_rows=inputs.total_rows(),
        fingerprint={"job": "predict", "model": source.ref, "files": file_sizes(source),
                     "input": inputs.fingerprint(), "batch_size": spec.batch_size,
                     "columns": list(types), "output": str(spec.output)})
    result = run_parts(settings, PredictScorerSource(source, cols),
                       lambda: inputs.chunks(spec.batch_size, types), stream,
                       scorer=PredictScorer(predictor, cols) if spec.workers == 1 else None,
                       plan=plan_parquet(inputs, spec.batch_size, types) if spec.workers > 1
                       else None)
    metrics_path = work_paths(spec.output)[2]
    metrics = _metrics(spec, result, source, metrics_path)
    shutil.rmtree(result.work)
    return BatchSummary.of(result, spec.output, started, metrics=metrics,
                           metrics_path=metrics_path if metrics else None)


def _metrics(spec: PredictJobSpec, result: RunResult, source: PredictorSource,
             path: Path) -> dict[str, float]:
    if not spec.label_column:
        return {}
    labels, scores, groups = [], [], []
    id_name = spec.id_column or "row"
    for i in range(result.chunks):
        table = pq.ParquetFile(part_path(result.work, i)).read()
        outputs = [n for n in table.schema.names
                   if n not in (id_name, spec.label_column, spec.group_column)]
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

        # Prefixed, and the version's data hash kept: its own metrics were measured on its
        # evaluation rows, and `models diff` must not compare numbers from different data.
        Registry.open().update_metrics(
            source.ref, {f"{REGISTERED_PREFIX}{k}": v for k, v in metrics.items()})
    return metrics
