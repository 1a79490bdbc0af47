"""Approximate nearest neighbours over catalog vectors (HNSW, inner product on unit vectors)."""

from __future__ import annotations

from pathlib import Path

import hnswlib
import numpy as np

from shopserve.errors import IntegrityError


class VectorIndex:
    """An HNSW index over unit-length vectors; ``query`` returns ids and cosine similarities."""

    def __init__(self, index: hnswlib.Index, size: int) -> None:
        self._index = index
        self.size = size

    @classmethod
    def build(cls, vectors: np.ndarray, seed: int = 0) -> VectorIndex:
        index = hnswlib.Index(space="ip", dim=int(vectors.shape[1]))
        index.init_index(max_elements=len(vectors), ef_construction=200, M=16, random_seed=seed)
        index.add_items(vectors, np.arange(len(vectors)), num_threads=1)
        return cls(index, len(vectors))

    @classmethod
    def load(cls, path: Path, vectors: np.ndarray) -> VectorIndex:
        index = hnswlib.Index(space="ip", dim=int(vectors.shape[1]))
        try:
            index.load_index(str(path), max_elements=len(vectors))
        except RuntimeError as exc:
            raise IntegrityError(f"{path}: not a readable HNSW index: {exc}") from exc
        if index.get_current_count() != len(vectors):
            raise IntegrityError(
                f"{path}: index holds {index.get_current_count()} vectors, "
                f"the embeddings file {len(vectors)}"
            )
        return cls(index, len(vectors))

    def save(self, path: Path) -> None:
        self._index.save_index(str(path))

    def query(self, vectors: np.ndarray, n: int, ef: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, similarities)``, each ``(len(vectors), min(n, size))``, best first."""
        n = min(n, self.size)
        self._index.set_ef(max(ef, n))
        ids, dist = self._index.knn_query(vectors, k=n, num_threads=1)
        return ids.astype(np.int64), (1.0 - dist).astype(np.float32)
