"""``batch embed``: re-embed a catalog with a search model's encoder and register the result.

The vectors are written like any batch output (``product_id, title, embedding``); then a fresh
HNSW index over them becomes a new version of the search model, child of the one used.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from shopserve.batch.chunk_plans import plan_parquet
from shopserve.batch.job import BatchSummary, file_sizes, resolve_model
from shopserve.batch.predictors import PredictorSource
from shopserve.batch.runner import RunResult, RunSettings, run_parts
from shopserve.batch.scoring import ChunkScorer, ScoredChunk
from shopserve.batch.sinks import part_path
from shopserve.batch.sources import Chunk, FileFormat, InputSet, check_columns, format_of
from shopserve.errors import UsageError
from shopserve.types import ModelKind

if TYPE_CHECKING:
    from shopserve.models.search.encoder import TextEncoder

EMBEDDING = "embedding"
# What ``train_search`` encodes titles with (SearchTrainSpec.title_tokens); a version's config
# does not record it, so the job takes it as an option with the training default.
TITLE_TOKENS = 48
CARRIED = ("tokenizer.json", "reranker.onnx", "eval.parquet")  # unchanged from the parent


class EmbedJobSpec(BaseModel):
    """One ``batch embed`` run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    catalog: Path
    output: Path
    id_column: str = "product_id"
    text_column: str = "title"
    title_tokens: int = Field(default=TITLE_TOKENS, ge=2, le=512)
    workers: int = Field(default=1, ge=1, le=256)
    batch_size: int = Field(default=1024, ge=1, le=1_000_000)
    overwrite: bool = False
    restart: bool = False


@dataclass(frozen=True)
class EmbedScorerSource:
    source: PredictorSource
    id_column: str
    text_column: str
    title_tokens: int

    def build(self) -> ChunkScorer:
        from shopserve.models.search.encoder import TextEncoder
        from shopserve.models.search.tokenizer import QueryTokenizer

        graph = str(self.source.config.get("graph", "encoder.onnx"))
        missing = [n for n in (graph, "tokenizer.json") if n not in self.source.files]
        if missing:
            raise UsageError(f"{self.source.ref}: missing artifact(s) {missing} for embedding")
        tokenizer = QueryTokenizer(Path(self.source.files["tokenizer.json"]), self.title_tokens)
        encoder = TextEncoder(Path(self.source.files[graph]), tokenizer, self.source.settings)
        return EmbedScorer(encoder, self.id_column, self.text_column)


class EmbedScorer:
    """A chunk of catalog rows to unit vectors; rows without an id or a title are bad."""

    def __init__(self, encoder: TextEncoder, id_column: str, text_column: str) -> None:
        self.encoder, self.id_column, self.text_column = encoder, id_column, text_column

    def score(self, chunk: Chunk) -> ScoredChunk:
        ids = pc.cast(chunk.batch.column(self.id_column), pa.string())
        texts = pc.cast(chunk.batch.column(self.text_column), pa.string())
        bad = dict(chunk.bad)
        for name, column in ((self.id_column, ids), (self.text_column, texts)):
            empty = pc.or_kleene(pc.is_null(column),
                                 pc.equal(pc.utf8_trim_whitespace(column), ""))
            for i in np.flatnonzero(empty.to_numpy(zero_copy_only=False)):
                bad.setdefault(int(i), f"column {name!r}: missing or empty")
        if bad:
            keep = np.ones(len(ids), dtype=bool)
            keep[list(bad)] = False
            mask = pa.array(keep)
            ids, texts = ids.filter(mask), texts.filter(mask)
        dim = self.encoder.dim
        vectors = (self.encoder.encode([str(t) for t in texts.to_pylist()]) if len(texts)
                   else np.zeros((0, dim), np.float32))
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
        table = pa.table({"product_id": ids, "title": texts,
                          EMBEDDING: pa.FixedSizeListArray.from_arrays(flat, dim)})
        raw_ids = chunk.batch.column(self.id_column)
        errors = [{"row": chunk.start + i, "id": raw_ids[i].as_py(), "reason": bad[i]}
                  for i in sorted(bad)]
        return ScoredChunk(table, errors)


def run_embed(spec: EmbedJobSpec, stream: TextIO | None = None) -> BatchSummary:
    """Embed the catalog, then register the new index as a child of the search version."""
    started = time.monotonic()
    if spec.model.endswith(".onnx"):
        raise UsageError("'batch embed' needs a search model from the registry, such as "
                         "search@production, not a plain .onnx file")
    source = resolve_model(spec.model)
    if source.kind is not ModelKind.SEARCH:
        raise UsageError(f"{source.ref} is a {source.kind.value!r} model; 'batch embed' needs "
                         f"a search model")
    inputs = InputSet.discover(spec.catalog)
    check_columns(inputs, [spec.id_column, spec.text_column])
    out_format = format_of(spec.output) if spec.output.suffix else None
    if out_format is FileFormat.CSV or (out_format is None and inputs.fmt is FileFormat.CSV):
        raise UsageError(f"{spec.output}: vectors cannot be written as CSV; use .parquet "
                         f"or .jsonl")
    scorer_source = EmbedScorerSource(source, spec.id_column, spec.text_column,
                                      spec.title_tokens)
    scorer = scorer_source.build()
    types = {spec.id_column: pa.string(), spec.text_column: pa.string()}
    settings = RunSettings(
        output=spec.output, out_format=out_format, dir_format=inputs.fmt, workers=spec.workers,
        overwrite=spec.overwrite, restart=spec.restart, total_rows=inputs.total_rows(),
        fingerprint={"job": "embed", "model": source.ref, "files": file_sizes(source),
                     "input": inputs.fingerprint(), "batch_size": spec.batch_size,
                     "title_tokens": spec.title_tokens, "output": str(spec.output)})
    result = run_parts(settings, scorer_source, lambda: inputs.chunks(spec.batch_size, types),
                       stream, scorer=scorer if spec.workers == 1 else None,
                       plan=plan_parquet(inputs, spec.batch_size, types) if spec.workers > 1
                       else None)
    if result.rows == 0:
        raise UsageError(f"{spec.catalog}: no product could be embedded (see "
                         f"{result.errors_path}); nothing was registered")
    version = register_index(source, result)
    shutil.rmtree(result.work)
    return BatchSummary.of(result, spec.output, started, registered=version,
                           metrics=_registered_metrics(version))


def register_index(source: PredictorSource, result: RunResult) -> str:
    """Catalog, vectors and a fresh HNSW index from the parts; the rest from the parent."""
    from shopserve.models import evaluate, load_pipeline
    from shopserve.models.search.ann import VectorIndex
    from shopserve.registry import Registry

    registry = Registry.open()
    parent = registry.get(source.ref)
    graph = str(source.config.get("graph", "encoder.onnx"))
    missing = [n for n in (graph, *CARRIED) if n not in source.files]
    if missing:
        raise UsageError(f"{source.ref}: missing artifact(s) {missing}; cannot build a version")
    with tempfile.TemporaryDirectory(prefix=".embed-", dir=result.work) as tmp:
        out = Path(tmp)
        vectors = _write_catalog(result, out)
        VectorIndex.build(vectors).save(out / "index.hnsw")
        del vectors
        files = {name: Path(source.files[name]) for name in (graph, *CARRIED)}
        files.update({n: out / n for n in ("catalog.parquet", "embeddings.npy", "index.hnsw")})
        pipe = load_pipeline(ModelKind.SEARCH, source.config, files, source.settings)
        metrics = evaluate(pipe, files["eval.parquet"])
        child = registry.register(parent.name, files=files, kind=ModelKind.SEARCH,
                                  signature=parent.signature, config=source.config,
                                  metrics=metrics, data_hash=parent.data_hash, parent=parent.ref)
    return child.ref


def _write_catalog(result: RunResult, out: Path) -> np.ndarray:
    """``catalog.parquet`` and ``embeddings.npy`` in output order, streamed from the parts."""
    first = pq.read_schema(part_path(result.work, 0))
    dim = first.field(EMBEDDING).type.list_size
    vectors = np.lib.format.open_memmap(out / "embeddings.npy", mode="w+", dtype=np.float32,
                                        shape=(result.rows, dim))
    schema = pa.schema([("product_id", pa.string()), ("title", pa.string())])
    at = 0
    with pq.ParquetWriter(out / "catalog.parquet", schema) as writer:
        for i in range(result.chunks):
            table = pq.ParquetFile(part_path(result.work, i)).read()
            n = table.num_rows
            flat = table.column(EMBEDDING).combine_chunks().flatten().to_numpy()
            vectors[at : at + n] = flat.reshape(n, dim)
            writer.write_table(table.select(["product_id", "title"]).cast(schema))
            at += n
    vectors.flush()
    return vectors


def _registered_metrics(ref: str) -> dict[str, float]:
    from shopserve.registry import Registry

    return dict(Registry.open().get(ref).metrics)
