"""The product-search pipeline: encode → ANN ∪ BM25 candidates → features → re-ranker → top k.

Built from a version's verified artifacts; runs on ONNX Runtime, numpy and voyager only.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shopserve.errors import InputError, IntegrityError, NotFoundError, SpecError
from shopserve.models.base import Hit
from shopserve.models.search.ann import VectorIndex
from shopserve.models.search.bm25 import BM25Index, top_n, top_n_sets
from shopserve.models.search.encoder import TextEncoder
from shopserve.models.search.features import FEATURE_NAMES, TitleFeatures
from shopserve.models.search.reranker import RERANK_INPUT, RERANK_OUTPUT
from shopserve.models.search.settings import SearchSettings
from shopserve.models.search.tokenizer import QueryTokenizer
from shopserve.runtime.onnx import OnnxModel, SessionSettings
from shopserve.types import ModelKind, ModelSignature

CHUNK_CELLS = 1 << 22  # BM25 scores (float64) held at once: queries x catalog products

ARTIFACTS = ("tokenizer.json", "catalog.parquet", "embeddings.npy", "index.hnsw", "reranker.onnx")


@dataclass(frozen=True)
class Candidates:
    """A batch's candidates, stacked: query ``i`` owns rows ``bounds[i]:bounds[i + 1]``."""

    bounds: np.ndarray
    docs: np.ndarray  # catalog indices, ascending within a query
    features: np.ndarray  # (rows, len(FEATURE_NAMES)) float32

    def spans(self) -> Iterator[tuple[int, int]]:
        return ((int(a), int(b)) for a, b in itertools.pairwise(self.bounds))


class SearchPipeline:
    """Query text to ranked products; ``run_tensors`` runs the encoder graph alone."""

    kind = ModelKind.SEARCH

    def __init__(
        self, config: Mapping[str, Any], files: Mapping[str, Path],
        settings: SessionSettings | None = None,
    ) -> None:
        graph = str(config.get("graph", "encoder.onnx"))
        missing = [name for name in (graph, *ARTIFACTS) if name not in files]
        if missing:
            raise NotFoundError(f"search model is missing artifact(s) {missing}")
        try:
            self.settings = SearchSettings.model_validate(config.get("search", {}))
        except ValueError as exc:
            raise SpecError(f"search model config['search'] is invalid: {exc}") from exc
        features = list(config.get("features", FEATURE_NAMES))
        if features != list(FEATURE_NAMES):
            raise IntegrityError(f"search model's re-ranker was trained on features {features}; "
                                 f"this shopserve computes {list(FEATURE_NAMES)}: retrain it")
        tokenizer = QueryTokenizer(files["tokenizer.json"], self.settings.query_tokens)
        self.encoder = TextEncoder(files[graph], tokenizer, settings)
        catalog = pq.read_table(files["catalog.parquet"], columns=["product_id", "title"])
        self.product_ids = [str(p) for p in catalog.column("product_id").to_pylist()]
        self.titles = [t or "" for t in catalog.column("title").to_pylist()]
        self.vectors = np.load(files["embeddings.npy"], allow_pickle=False)
        if self.vectors.shape != (len(self.product_ids), self.encoder.dim):
            raise IntegrityError(
                f"embeddings.npy has shape {self.vectors.shape}, expected "
                f"({len(self.product_ids)}, {self.encoder.dim}) for the catalog and encoder"
            )
        self.index = VectorIndex.load(files["index.hnsw"], self.vectors)
        self.bm25 = BM25Index(self.titles, self.settings.bm25_k1, self.settings.bm25_b)
        self.title_features = TitleFeatures(self.titles, self.bm25)
        self.reranker = OnnxModel(files["reranker.onnx"], settings)

    @property
    def signature(self) -> ModelSignature:
        return self.encoder.model.signature

    def run_tensors(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.encoder.model.run(inputs)

    def featurize(self, rows: pa.Table) -> dict[str, np.ndarray]:
        """Encoder-graph inputs for the distinct queries of ``rows`` (e.g. calibration data)."""
        if "query" not in rows.column_names:
            raise InputError(f"rows need a 'query' column, got {rows.column_names}")
        queries = [str(q) for q in dict.fromkeys(rows.column("query").to_pylist()) if q]
        return self.encoder.tokenizer(queries)

    def check_queries(self, queries: list[str], k: int) -> None:
        """``InputError`` for an empty batch, empty or oversized query, or a bad ``k``."""
        if not queries:
            raise InputError("queries: expected at least one query, got an empty list")
        if len(queries) > self.settings.max_batch:
            raise InputError(f"queries: at most {self.settings.max_batch} per call, "
                             f"got {len(queries)}")
        if not 1 <= k <= self.settings.candidates:
            raise InputError(f"k must be between 1 and {self.settings.candidates}, got {k}")
        for i, query in enumerate(queries):
            if not isinstance(query, str) or not query.strip():
                raise InputError(f"queries[{i}]: expected non-empty text, got {query!r}")
            if len(query) > self.settings.max_query_chars:
                raise InputError(f"queries[{i}]: {len(query)} characters, the limit is "
                                 f"{self.settings.max_query_chars}")

    def encode(self, queries: list[str]) -> np.ndarray:
        return self.encoder.encode(queries)

    def search(self, queries: list[str], k: int) -> list[list[Hit]]:
        """The ``k`` best products for each query, best first."""
        self.check_queries(queries, k)
        ranked = self.rank(queries, k)
        return [[self._hit(doc, score) for doc, score in zip(*row, strict=True)] for row in ranked]

    def candidates(self, queries: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query: catalog indices from ANN ∪ BM25, and their re-ranker feature rows."""
        found = self._candidates(queries)
        return [(found.docs[a:b], found.features[a:b]) for a, b in found.spans()]

    def rank(self, queries: list[str], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Catalog indices and re-ranker scores of the top ``k`` per query."""
        found = self._candidates(queries)
        flat = self.reranker.run({RERANK_INPUT: found.features})[RERANK_OUTPUT]
        out = []
        for a, b in found.spans():
            order, values = top_n(flat[a:b], min(k, b - a))
            out.append((found.docs[a + order], values))
        return out

    def _candidates(self, queries: list[str]) -> Candidates:
        """Candidates and feature rows of every query, in chunks of rows × catalog cells."""
        embedded = self.encode(queries)
        n = self.settings.candidates
        ann_ids, _ = self.index.query(embedded, n, self.settings.ef_search)
        step = max(1, CHUNK_CELLS // self.bm25.size)
        parts = [self._chunk(queries[i : i + step], embedded[i : i + step], ann_ids[i : i + step])
                 for i in range(0, len(queries), step)]
        if len(parts) == 1:
            return parts[0]
        counts = np.concatenate([np.diff(p.bounds) for p in parts])
        return Candidates(np.concatenate([[0], np.cumsum(counts)]),
                          np.concatenate([p.docs for p in parts]),
                          np.concatenate([p.features for p in parts]))

    def _chunk(self, queries: list[str], embedded: np.ndarray, ann_ids: np.ndarray) -> Candidates:
        """One batch at once: BM25 as one sparse product, the union of each query's ANN and
        BM25 top ``candidates`` as one boolean matrix, features over every pair together.

        The same candidates and feature rows, bit for bit, as taking the queries one at a time
        (``tests/models/test_search_pipeline.py`` compares them).
        """
        bm25 = self.bm25.scores_batch(queries)
        lex_rows, lex_docs = top_n_sets(bm25, self.settings.candidates)
        chosen = np.zeros(bm25.shape, dtype=bool)
        dense_rows, dense_cols = np.nonzero(ann_ids >= 0)
        chosen[dense_rows, ann_ids[dense_rows, dense_cols]] = True
        chosen[lex_rows, lex_docs] = True
        owners, docs = np.nonzero(chosen)  # by query, then by catalog index (np.unique's order)
        bounds = np.concatenate([[0], np.cumsum(np.bincount(owners, minlength=len(queries)))])
        vectors = self.vectors[docs]
        cosine = np.empty(len(docs), dtype=np.float32)
        for row, (a, b) in enumerate(itertools.pairwise(bounds)):
            cosine[a:b] = vectors[a:b] @ embedded[row]  # a matrix-vector product per query
        features = self.title_features.pairs_batch(queries, bounds, docs, bm25[owners, docs],
                                                   cosine)
        return Candidates(bounds, docs, features)

    def bm25_only(self, queries: list[str], k: int) -> list[np.ndarray]:
        return [top_n(self.bm25.scores(q), k, positive_only=True)[0] for q in queries]

    def dense_only(self, queries: list[str], k: int) -> list[np.ndarray]:
        """Exact cosine top ``k`` (no ANN), the encoder's own quality."""
        sims = self.encode(queries) @ self.vectors.T
        return [top_n(row, min(k, row.size))[0] for row in sims]

    def _hit(self, doc: np.integer[Any], score: np.floating[Any]) -> Hit:
        return Hit(product_id=self.product_ids[doc], score=float(score), title=self.titles[doc])

