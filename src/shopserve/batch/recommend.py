"""``batch recommend``: the top-K items of every customer, precomputed from the item index.

Customers come from the model itself (every customer it was trained on) or from a file; the
output has one row per (customer, rank): ``customer_id, rank, item_id, score``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from shopserve.batch.chunk_plans import plan_parquet
from shopserve.batch.job import BatchSummary, file_sizes, resolve_model
from shopserve.batch.predictors import PredictorSource
from shopserve.batch.runner import RunSettings, run_parts
from shopserve.batch.scoring import ChunkScorer, ScoredChunk
from shopserve.batch.sources import Chunk, FileFormat, InputSet, check_columns, format_of
from shopserve.errors import UsageError
from shopserve.types import ModelKind

if TYPE_CHECKING:
    from shopserve.models.recommend_pipeline import RecommendPipeline

CUSTOMER_COLUMN = "customer_id"


class RecommendJobSpec(BaseModel):
    """One ``batch recommend`` run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    output: Path
    top_k: int = Field(default=50, ge=1)
    customers: Path | None = None  # None: every customer the model knows
    customer_column: str = CUSTOMER_COLUMN
    workers: int = Field(default=1, ge=1, le=256)
    batch_size: int = Field(default=1024, ge=1, le=1_000_000)
    overwrite: bool = False
    restart: bool = False


@dataclass(frozen=True)
class RecommendScorerSource:
    source: PredictorSource
    k: int
    column: str

    def build(self) -> ChunkScorer:
        return self.build_scorer()

    def build_scorer(self) -> RecommendScorer:
        from shopserve.models.recommend_pipeline import RecommendPipeline

        paths = {name: Path(p) for name, p in self.source.files.items()}
        return RecommendScorer(RecommendPipeline(self.source.config, paths,
                                                 self.source.settings), self.k, self.column)


class RecommendScorer:
    """A chunk of customer ids to ``k`` rows each, straight from the index graph's tensors."""

    def __init__(self, pipeline: RecommendPipeline, k: int, column: str) -> None:
        self.pipeline, self.k, self.column = pipeline, k, column
        self.known = pa.array(list(pipeline.customer_pos), pa.string())
        self.items = pa.array(pipeline.product_ids, pa.string())

    def score(self, chunk: Chunk) -> ScoredChunk:
        ids = pc.cast(chunk.batch.column(self.column), pa.string())
        bad = dict(chunk.bad)
        missing = pc.or_kleene(pc.is_null(ids), pc.equal(pc.utf8_trim_whitespace(ids), ""))
        for i in np.flatnonzero(missing.to_numpy(zero_copy_only=False)):
            bad.setdefault(int(i), f"column {self.column!r}: missing customer id")
        keep = np.ones(len(ids), dtype=bool)
        keep[list(bad)] = False
        good = ids if not bad else ids.filter(pa.array(keep))
        # Customers the model has not seen get the popularity row, as online.
        pos = pc.fill_null(pc.index_in(good, value_set=self.known), self.pipeline.unknown)
        positions = np.asarray(pos.to_numpy(zero_copy_only=False), dtype=np.int64)
        k, n = self.k, len(good)
        if n:
            out = self.pipeline.model.run({"customer": positions}, check=False)
            scores = np.ascontiguousarray(out["scores"][:, :k], dtype=np.float32).reshape(-1)
            items = np.ascontiguousarray(out["items"][:, :k], dtype=np.int64).reshape(-1)
        else:
            scores, items = np.zeros(0, np.float32), np.zeros(0, np.int64)
        table = pa.table({
            CUSTOMER_COLUMN: good.take(pa.array(np.repeat(np.arange(n), k))),
            "rank": pa.array(np.tile(np.arange(1, k + 1, dtype=np.int32), n)),
            "item_id": self.items.take(pa.array(items)),
            "score": pa.array(scores),
        })
        errors = [{"row": chunk.start + i, "id": ids[i].as_py(), "reason": bad[i]}
                  for i in sorted(bad)]
        return ScoredChunk(table, errors)


def _model_customers(source: PredictorSource, batch_size: int) -> Iterator[Chunk]:
    from shopserve.models.recommend_pipeline import CUSTOMERS_FILE, read_json

    ids = pa.array([str(c) for c in read_json(Path(source.files[CUSTOMERS_FILE]))
                    ["customer_ids"]], pa.string())
    for index, start in enumerate(range(0, len(ids), batch_size)):
        part = ids.slice(start, batch_size)
        yield Chunk(index, start, pa.RecordBatch.from_arrays([part], names=[CUSTOMER_COLUMN]))


def run_recommend(spec: RecommendJobSpec, stream: TextIO | None = None) -> BatchSummary:
    """Run (or resume) a batch recommend job and return what it did."""
    started = time.monotonic()
    source = resolve_model(spec.model)
    if source.kind is not ModelKind.RECOMMEND:
        raise UsageError(f"{source.ref} is a {source.kind.value!r} model; 'batch recommend' "
                         f"needs a recommend model")
    scorer_source = RecommendScorerSource(source, spec.top_k, spec.customer_column
                                          if spec.customers else CUSTOMER_COLUMN)
    scorer = scorer_source.build_scorer()
    if spec.top_k > scorer.pipeline.max_k:
        raise UsageError(f"--top-k {spec.top_k}: {source.ref} keeps at most "
                         f"{scorer.pipeline.max_k} items per customer")
    out_format = format_of(spec.output) if spec.output.suffix else None
    fingerprint: dict[str, object] = {
        "job": "recommend", "model": source.ref, "files": file_sizes(source), "k": spec.top_k,
        "batch_size": spec.batch_size, "output": str(spec.output)}
    if spec.customers is not None:
        inputs = InputSet.discover(spec.customers)
        check_columns(inputs, [spec.customer_column])
        types = {spec.customer_column: pa.string()}
        fingerprint["input"] = inputs.fingerprint()
        settings = _settings(spec, out_format, inputs.fmt, fingerprint, inputs.total_rows())
        result = run_parts(settings, scorer_source,
                           lambda: inputs.chunks(spec.batch_size, types), stream,
                           scorer=scorer if spec.workers == 1 else None,
                           plan=plan_parquet(inputs, spec.batch_size, types)
                           if spec.workers > 1 else None)
    else:
        settings = _settings(spec, out_format, FileFormat.PARQUET, fingerprint,
                             len(scorer.known))
        result = run_parts(settings, scorer_source,
                           lambda: _model_customers(source, spec.batch_size), stream,
                           scorer=scorer if spec.workers == 1 else None)
    shutil.rmtree(result.work)
    return BatchSummary.of(result, spec.output, started)


def _settings(spec: RecommendJobSpec, out_format: FileFormat | None, dir_format: FileFormat,
              fingerprint: dict[str, object], total: int | None) -> RunSettings:
    return RunSettings(output=spec.output, out_format=out_format, dir_format=dir_format,
                       workers=spec.workers, overwrite=spec.overwrite, restart=spec.restart,
                       fingerprint=dict(fingerprint), total_rows=total)
