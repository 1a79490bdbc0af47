"""Features of (query, candidate product) pairs that the learned re-ranker scores.

Each title's analyzed terms and character 3-grams are interned once per catalog into id arrays
(CSR rows), so a query's features for all its candidates are a few numpy gathers rather than a
Python loop that re-analyzed every candidate title per query (which cost more than the encoder).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from shopserve.models.search.bm25 import BM25Index, analyze, idf_of

FEATURE_NAMES = (
    "bm25",
    "bm25_rel",  # bm25 / best bm25 among this query's candidates
    "cosine",
    "cosine_gap",  # cosine - best cosine among this query's candidates
    "term_coverage",  # share of query terms found in the title
    "idf_coverage",  # the same, weighted by term idf
    "phrase_match",  # the whole analyzed query appears in the title
    "title_terms_log",
    "trigram_coverage",  # share of the query's character 3-grams found in the title (typos)
)


def trigrams(text: str) -> set[str]:
    """Character 3-grams of each analyzed word, padded so short words still count."""
    return {f" {w} "[i : i + 3] for w in analyze(text) for i in range(len(w))}


class SetRows:
    """One set of strings per document, interned to int32 ids in CSR form."""

    def __init__(self, sets: Iterable[Iterable[str]]) -> None:
        self.vocab: dict[str, int] = {}
        ids: list[int] = []
        indptr = [0]
        for items in sets:
            ids.extend(self.vocab.setdefault(item, len(self.vocab)) for item in items)
            indptr.append(len(ids))
        self.ids = np.asarray(ids, dtype=np.int32)
        self.indptr = np.asarray(indptr, dtype=np.int64)

    def present(self, docs: np.ndarray, wanted: Sequence[str]) -> np.ndarray:
        """``(len(docs), len(wanted))`` bool: does document ``docs[r]`` hold ``wanted[j]``."""
        out = np.zeros((len(docs), len(wanted) + 1), dtype=bool)
        column = np.zeros(len(self.vocab), dtype=np.intp)  # 0: an item the query lacks
        for j, item in enumerate(wanted):
            i = self.vocab.get(item)
            if i is not None:
                column[i] = j + 1
        if not len(docs) or not column.any():
            return out[:, 1:]
        starts, ends = self.indptr[docs], self.indptr[docs + 1]
        lengths = ends - starts
        rows = np.repeat(np.arange(len(docs)), lengths)
        flat = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out[rows, column[self.ids[flat + np.repeat(starts, lengths)]]] = True
        return out[:, 1:]


class TitleFeatures:
    """Per-title data precomputed once per catalog (analyzed terms, 3-grams, joined form)."""

    def __init__(self, titles: Sequence[str], bm25: BM25Index) -> None:
        analyzed = [analyze(t) for t in titles]
        self.joined = [" " + " ".join(a) + " " for a in analyzed]
        self.terms = SetRows(dict.fromkeys(a) for a in analyzed)
        self.grams = SetRows(trigrams(j) for j in self.joined)
        self.log_len = np.log1p(np.array([len(a) for a in analyzed], dtype=np.float32))
        self.bm25 = bm25

    def pairs(
        self, query: str, candidates: np.ndarray, bm25: np.ndarray, cosine: np.ndarray
    ) -> np.ndarray:
        """``(len(candidates), len(FEATURE_NAMES))`` float32 for one query."""
        candidates = np.asarray(candidates, dtype=np.int64)
        terms = sorted(set(analyze(query)))
        phrase = " " + " ".join(analyze(query)) + " "
        grams = sorted(trigrams(query))
        out = np.zeros((len(candidates), len(FEATURE_NAMES)), dtype=np.float32)
        best_bm25 = float(bm25.max()) if bm25.size and bm25.max() > 0 else 1.0
        out[:, 0] = bm25
        out[:, 1] = bm25 / best_bm25
        out[:, 2] = cosine
        out[:, 3] = cosine - (cosine.max() if cosine.size else 0.0)
        if terms:
            has = self.terms.present(candidates, terms)
            hits = has.sum(axis=1)
            out[:, 4] = hits / len(terms)
            idf = [idf_of(self.bm25, t) for t in terms]
            weighted = np.zeros(len(candidates), dtype=np.float64)
            for j, value in enumerate(idf):  # summed in term order, as a Python sum would
                weighted += np.where(has[:, j], value, 0.0)
            out[:, 5] = weighted / (sum(idf) or 1.0)
            # the phrase holds every query term as a whole word: only full-coverage titles
            for row in np.flatnonzero(hits == len(terms)):
                out[row, 6] = float(phrase in self.joined[candidates[row]])
        if grams:
            out[:, 8] = self.grams.present(candidates, grams).sum(axis=1) / len(grams)
        out[:, 7] = self.log_len[candidates]
        return out
