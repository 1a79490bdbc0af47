"""Okapi BM25 over product titles, in numpy: the lexical retriever and a re-ranker feature.

Postings are stored per term with their BM25 weight precomputed, so scoring a query is one
scatter-add per query term over the documents that contain it, and scoring a batch of queries is
one ``bincount`` over all their postings (a sparse query-term × term-document product).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from shopserve.errors import InputError

_TOKEN = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")


def analyze(text: str) -> list[str]:
    """Lower-cased alphanumeric terms, with a plural ``s`` dropped from longer words."""
    terms = _TOKEN.findall(text.lower())
    return [t[:-1] if len(t) > 3 and t.endswith("s") and not t.endswith("ss") else t for t in terms]


class BM25Index:
    """Okapi BM25 (``k1``, ``b``) over a fixed list of documents."""

    def __init__(self, docs: Sequence[str], k1: float = 1.2, b: float = 0.75) -> None:
        if not docs:
            raise InputError("BM25 needs at least one document, got none")
        if k1 < 0 or not 0.0 <= b <= 1.0:
            raise InputError(f"BM25 parameters out of range: k1={k1} (>= 0), b={b} (0..1)")
        self.size = len(docs)
        counts = [Counter(analyze(doc)) for doc in docs]
        lengths = np.array([sum(c.values()) for c in counts], dtype=np.float64)
        avg = float(lengths.mean()) or 1.0
        postings: dict[str, list[tuple[int, int]]] = {}
        for doc_id, counter in enumerate(counts):
            for term, tf in counter.items():
                postings.setdefault(term, []).append((doc_id, tf))
        self.vocab = {term: i for i, term in enumerate(sorted(postings))}
        indptr = np.zeros(len(self.vocab) + 1, dtype=np.int64)
        doc_ids: list[int] = []
        tfs: list[int] = []
        for term, i in self.vocab.items():
            plist = postings[term]
            indptr[i + 1] = indptr[i] + len(plist)
            doc_ids.extend(d for d, _ in plist)
            tfs.extend(tf for _, tf in plist)
        self.indptr = indptr
        self.doc_ids = np.asarray(doc_ids, dtype=np.int64)
        freq = np.asarray(tfs, dtype=np.float64)
        df = np.diff(indptr).astype(np.float64)
        idf = np.log1p((self.size - df + 0.5) / (df + 0.5))
        norm = k1 * (1.0 - b + b * lengths[self.doc_ids] / avg)
        self.weights = np.repeat(idf, np.diff(indptr)) * freq * (k1 + 1.0) / (freq + norm)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for ``query`` (float64, zeros where nothing matches)."""
        out = np.zeros(self.size, dtype=np.float64)
        for term, qtf in Counter(analyze(query)).items():
            i = self.vocab.get(term)
            if i is None:
                continue
            start, end = self.indptr[i], self.indptr[i + 1]
            out[self.doc_ids[start:end]] += qtf * self.weights[start:end]
        return out

    def scores_batch(self, queries: Sequence[str]) -> np.ndarray:
        """``(len(queries), size)`` float64: row ``i`` is ``scores(queries[i])``, bit for bit.

        One ``bincount`` over the postings of every query's terms. Each cell's contributions
        are added in the order ``scores`` adds them (query terms in first-seen order, from
        0.0), so the sums round the same way.
        """
        cells: list[np.ndarray] = []
        weights: list[np.ndarray] = []
        for row, query in enumerate(queries):
            base = row * self.size
            for term, qtf in Counter(analyze(query)).items():
                i = self.vocab.get(term)
                if i is None:
                    continue
                start, end = self.indptr[i], self.indptr[i + 1]
                cells.append(self.doc_ids[start:end] + base)
                weights.append(qtf * self.weights[start:end])
        total = len(queries) * self.size
        if not cells:
            return np.zeros((len(queries), self.size), dtype=np.float64)
        flat = np.bincount(np.concatenate(cells), np.concatenate(weights), minlength=total)
        return flat.reshape(len(queries), self.size)

    def top(self, query: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices and scores of the ``n`` best documents with a positive score, best first."""
        scores = self.scores(query)
        return top_n(scores, n, positive_only=True)


def top_n(scores: np.ndarray, n: int, positive_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` largest entries of ``scores`` as (indices, values), best first, ties by index."""
    candidates = np.flatnonzero(scores > 0) if positive_only else np.arange(scores.size)
    if candidates.size > n:
        part = np.argpartition(-scores[candidates], n - 1)[:n]
        candidates = candidates[part]
    order = np.lexsort((candidates, -scores[candidates]))
    picked = candidates[order]
    return picked, scores[picked]


def top_n_sets(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, columns)`` of each row's ``top_n(row, n, positive_only=True)`` entries, by row.

    The same entries as ``top_n`` row by row, ties at the cut included (a row with more than
    ``n`` positive entries is cut by the same ``argpartition`` call on the same values); within
    a row the columns come in ascending order, not best first.
    """
    rows, cols = np.nonzero(scores > 0)
    counts = np.bincount(rows, minlength=scores.shape[0])
    over = np.flatnonzero(counts > n)
    if not over.size:
        return rows, cols
    bounds = np.concatenate([[0], np.cumsum(counts)])
    keep = np.ones(cols.size, dtype=bool)
    for row in over:
        start, end = bounds[row], bounds[row + 1]
        part = np.argpartition(-scores[row, cols[start:end]], n - 1)[:n]
        keep[start:end] = False
        keep[start + part] = True
    return rows[keep], cols[keep]


def idf_of(index: BM25Index, term: str) -> float:
    """Inverse document frequency of one analyzed term (0 for unknown terms)."""
    i = index.vocab.get(term)
    if i is None:
        return 0.0
    df = float(index.indptr[i + 1] - index.indptr[i])
    return math.log1p((index.size - df + 0.5) / (df + 0.5))
