"""Features of (query, candidate product) pairs that the learned re-ranker scores."""

from __future__ import annotations

from collections.abc import Sequence

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


class TitleFeatures:
    """Per-title data precomputed once per catalog (analyzed terms, joined form)."""

    def __init__(self, titles: Sequence[str], bm25: BM25Index) -> None:
        analyzed = [analyze(t) for t in titles]
        self.terms = [frozenset(a) for a in analyzed]
        self.joined = [" " + " ".join(a) + " " for a in analyzed]
        self.log_len = np.log1p(np.array([len(a) for a in analyzed], dtype=np.float32))
        self.bm25 = bm25

    def pairs(
        self, query: str, candidates: np.ndarray, bm25: np.ndarray, cosine: np.ndarray
    ) -> np.ndarray:
        """``(len(candidates), len(FEATURE_NAMES))`` float32 for one query."""
        terms = sorted(set(analyze(query)))
        idf = {t: idf_of(self.bm25, t) for t in terms}
        idf_total = sum(idf.values()) or 1.0
        phrase = " " + " ".join(analyze(query)) + " "
        grams = trigrams(query)
        out = np.zeros((len(candidates), len(FEATURE_NAMES)), dtype=np.float32)
        best_bm25 = float(bm25.max()) if bm25.size and bm25.max() > 0 else 1.0
        out[:, 0] = bm25
        out[:, 1] = bm25 / best_bm25
        out[:, 2] = cosine
        out[:, 3] = cosine - (cosine.max() if cosine.size else 0.0)
        for row, doc in enumerate(candidates):
            title_terms = self.terms[doc]
            hits = [t for t in terms if t in title_terms]
            out[row, 4] = len(hits) / len(terms) if terms else 0.0
            out[row, 5] = sum(idf[t] for t in hits) / idf_total
            out[row, 6] = float(bool(terms) and phrase in self.joined[doc])
            if grams:
                out[row, 8] = len(grams & trigrams(self.joined[doc])) / len(grams)
        out[:, 7] = self.log_len[candidates]
        return out
