"""Approximate nearest neighbours over catalog vectors (HNSW, inner product on unit vectors).

Voyager (an HNSW library with wheels for every common platform and no dependencies) rather than
hnswlib, which publishes source releases only and so cannot go into an offline bundle as a wheel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from voyager import Index, Space

from shopserve.errors import IntegrityError


class VectorIndex:
    """An HNSW index over unit-length vectors; ``query`` returns ids and cosine similarities."""

    def __init__(self, index: Index, size: int) -> None:
        self._index = index
        self.size = size

    @classmethod
    def build(cls, vectors: np.ndarray, seed: int = 0) -> VectorIndex:
        index = Index(Space.InnerProduct, num_dimensions=int(vectors.shape[1]), M=16,
                      ef_construction=200, random_seed=seed)
        index.add_items(vectors, np.arange(len(vectors)), num_threads=1)
        return cls(index, len(vectors))

    @classmethod
    def load(cls, path: Path, vectors: np.ndarray) -> VectorIndex:
        try:
            index = Index.load(str(path))
        except (RuntimeError, ValueError) as exc:
            raise IntegrityError(f"{path}: not a readable HNSW index: {exc}") from exc
        if index.num_dimensions != vectors.shape[1] or index.space != Space.InnerProduct:
            raise IntegrityError(
                f"{path}: index is {index.space.name} over {index.num_dimensions} dimensions, "
                f"the embeddings have {vectors.shape[1]}"
            )
        if len(index) != len(vectors):
            raise IntegrityError(
                f"{path}: index holds {len(index)} vectors, the embeddings file {len(vectors)}"
            )
        return cls(index, len(vectors))

    def save(self, path: Path) -> None:
        self._index.save(str(path))

    def query(self, vectors: np.ndarray, n: int, ef: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, similarities)``, each ``(len(vectors), min(n, size))``, best first."""
        n = min(n, self.size)
        ids, dist = self._index.query(vectors, k=n, num_threads=1, query_ef=max(ef, n))
        return ids.astype(np.int64), (1.0 - dist).astype(np.float32)
