"""Features of (query, candidate product) pairs that the learned re-ranker scores.

Each title's analyzed terms and character 3-grams are interned once per catalog into id arrays
(CSR rows), so the features of a whole batch of queries and all their candidates are a few numpy
gathers rather than a Python loop that re-analyzed every candidate title per query (which cost
more than the encoder). Only the query side (analyzing ~10 words) is Python per query.
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


BITMAP_BYTES = 64 << 20  # the most a SetRows spends on its item x document bitmap


class SetRows:
    """One set of strings per document, interned to int32 ids in CSR form.

    Up to ``bitmap_bytes``, also an item-major bitmap (bit ``d`` of row ``i``: document ``d``
    holds item ``i``), so that asking whether candidates hold a query's items costs one lookup
    per (candidate, query item) instead of a pass over every item of every candidate (a title
    holds ~50 3-grams, a query ~16). Larger catalogs fall back to that pass.
    """

    def __init__(self, sets: Iterable[Iterable[str]], bitmap_bytes: int = BITMAP_BYTES) -> None:
        self.vocab: dict[str, int] = {}
        ids: list[int] = []
        indptr = [0]
        for items in sets:
            ids.extend(self.vocab.setdefault(item, len(self.vocab)) for item in items)
            indptr.append(len(ids))
        self.ids = np.asarray(ids, dtype=np.int32)
        self.indptr = np.asarray(indptr, dtype=np.int64)
        size = len(indptr) - 1
        stride = (size + 7) // 8  # bytes per item row: one bit per document
        self.bits: np.ndarray | None = None
        if len(self.vocab) * stride <= bitmap_bytes:
            docs = np.repeat(np.arange(size), np.diff(self.indptr))
            bits = np.zeros((len(self.vocab), stride), dtype=np.uint8)
            np.bitwise_or.at(bits, (self.ids, docs >> 3), (1 << (docs & 7)).astype(np.uint8))
            self.bits = bits

    def present(self, docs: np.ndarray, wanted: Sequence[str]) -> np.ndarray:
        """``(len(docs), len(wanted))`` bool: does document ``docs[r]`` hold ``wanted[j]``."""
        return self.present_batch(np.zeros(len(docs), dtype=np.intp), docs, [wanted])

    def present_batch(
        self, owners: np.ndarray, docs: np.ndarray, wanted: Sequence[Sequence[str]]
    ) -> np.ndarray:
        """``(len(docs), longest wanted)`` bool: does ``docs[p]`` hold ``wanted[owners[p]][j]``.

        Columns past a list's length are False.
        """
        width = max((len(items) for items in wanted), default=0)
        out = np.zeros((len(docs), width + 1), dtype=bool)
        if not len(docs) or not width:
            return out[:, 1:]
        owners = np.asarray(owners, dtype=np.intp)
        docs = np.asarray(docs, dtype=np.int64)
        if self.bits is not None:
            self._lookup(out, owners, docs, wanted)
        else:
            self._scan(out, owners, docs, wanted)
        return out[:, 1:]

    def _lookup(self, out: np.ndarray, owners: np.ndarray, docs: np.ndarray,
                wanted: Sequence[Sequence[str]]) -> None:
        """Fill ``out[:, 1:]`` from the bitmap, a block of (list's items x its pairs) per list."""
        assert self.bits is not None
        order = np.argsort(owners, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(owners, minlength=len(wanted)))])
        for r, items in enumerate(wanted):
            known = [(j + 1, i) for j, item in enumerate(items)
                     if (i := self.vocab.get(item)) is not None]
            if not known or bounds[r] == bounds[r + 1]:
                continue
            pairs = order[bounds[r] : bounds[r + 1]]
            held = self.bits[[i for _, i in known]][:, docs[pairs] >> 3]
            held >>= (docs[pairs] & 7).astype(np.uint8)
            out[pairs[:, None], [j for j, _ in known]] = (held & 1).T

    def _scan(self, out: np.ndarray, owners: np.ndarray, docs: np.ndarray,
              wanted: Sequence[Sequence[str]]) -> None:
        """Fill ``out[:, 1:]`` by one pass over every item of every document.

        Each item any list wants gets a slot; ``by_id`` maps a vocabulary id to it (0: no list
        wants it) and ``column[list, slot]`` to the item's column in that list (0: that list
        lacks it), so one gather over the documents' ids answers for every pair at once.
        """
        slots: dict[int, int] = {}
        owner, slot, col = [], [], []
        for r, items in enumerate(wanted):
            for j, item in enumerate(items):
                i = self.vocab.get(item)
                if i is not None:
                    owner.append(r)
                    slot.append(slots.setdefault(i, len(slots) + 1))
                    col.append(j + 1)
        if not slots:
            return
        by_id = np.zeros(len(self.vocab), dtype=np.intp)
        by_id[np.fromiter(slots, dtype=np.intp, count=len(slots))] = np.arange(1, len(slots) + 1)
        column = np.zeros((len(wanted), len(slots) + 1), dtype=np.intp)
        column[owner, slot] = col
        starts = self.indptr[docs]
        lengths = self.indptr[docs + 1] - starts
        ends = np.cumsum(lengths)
        total = int(ends[-1])
        if not total:
            return
        # positions of every document's ids in ``self.ids``, one run per document: +1 steps,
        # and a jump from a run's last id to the next (non-empty) run's first
        full = np.flatnonzero(lengths)
        first, last = starts[full], starts[full] + lengths[full] - 1
        flat = np.ones(total, dtype=np.int64)
        flat[0] = first[0]
        flat[(ends - lengths)[full[1:]]] = first[1:] - last[:-1]
        np.cumsum(flat, out=flat)
        found = by_id[self.ids[flat]]
        hits = np.flatnonzero(found)
        pair = np.searchsorted(ends, hits, side="right")
        out[pair, column[owners[pair], found[hits]]] = True


class QueryText:
    """The query side of the pair features, computed once per query."""

    def __init__(self, query: str, bm25: BM25Index) -> None:
        analyzed = analyze(query)
        self.terms = sorted(set(analyzed))
        self.idf = [idf_of(bm25, t) for t in self.terms]
        self.idf_total = sum(self.idf) or 1.0  # summed in term order, as before
        self.phrase = " " + " ".join(analyzed) + " "
        self.grams = sorted(trigrams(query))


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
        bounds = np.array([0, len(candidates)], dtype=np.int64)
        return self.pairs_batch([query], bounds, candidates, bm25, cosine)

    def pairs_batch(
        self, queries: Sequence[str], bounds: np.ndarray, candidates: np.ndarray,
        bm25: np.ndarray, cosine: np.ndarray,
    ) -> np.ndarray:
        """The rows of ``pairs`` for every query, stacked: query ``i`` owns candidate rows
        ``bounds[i]:bounds[i + 1]`` (``bm25`` and ``cosine`` are per candidate row).

        Bit for bit what ``pairs`` gives one query at a time: the per-query maxima and sums are
        taken in the same order and the same dtypes.
        """
        candidates = np.asarray(candidates, dtype=np.int64)
        bm25, cosine = np.asarray(bm25), np.asarray(cosine)
        counts = np.diff(bounds)
        owners = np.repeat(np.arange(len(queries)), counts)
        texts = [QueryText(q, self.bm25) for q in queries]
        out = np.zeros((len(candidates), len(FEATURE_NAMES)), dtype=np.float32)
        if not len(candidates):
            return out
        filled = counts > 0
        firsts = bounds[:-1][filled]  # each non-empty query's first row (rows are by query)
        # each query's best BM25 (1.0 if none is positive), in the scores' dtype as the Python
        # float divisor of one query at a time was; and its best cosine
        best_bm25 = np.ones(len(queries), dtype=bm25.dtype)
        top = np.maximum.reduceat(bm25, firsts)
        best_bm25[filled] = np.where(top > 0, top, 1.0)
        best_cos = np.zeros(len(queries), dtype=cosine.dtype)
        best_cos[filled] = np.maximum.reduceat(cosine, firsts)
        out[:, 0] = bm25
        out[:, 1] = bm25 / best_bm25[owners]
        out[:, 2] = cosine
        out[:, 3] = cosine - best_cos[owners]
        n_terms = np.array([len(t.terms) for t in texts], dtype=np.int64)
        if n_terms.any():
            has = self.terms.present_batch(owners, candidates, [t.terms for t in texts])
            hits = has.sum(axis=1)
            own_terms = n_terms[owners]
            with_terms = own_terms > 0
            out[with_terms, 4] = hits[with_terms] / own_terms[with_terms]
            idf = np.zeros((len(queries), has.shape[1]), dtype=np.float64)
            for i, text in enumerate(texts):
                idf[i, : len(text.idf)] = text.idf
            weighted = np.zeros(len(candidates), dtype=np.float64)
            for j in range(has.shape[1]):  # summed in term order, as a Python sum would
                weighted += np.where(has[:, j], idf[owners, j], 0.0)
            total = np.array([t.idf_total for t in texts], dtype=np.float64)
            out[with_terms, 5] = weighted[with_terms] / total[owners[with_terms]]
            # the phrase holds every query term as a whole word: only full-coverage titles
            for row in np.flatnonzero(with_terms & (hits == own_terms)):
                phrase = texts[owners[row]].phrase
                out[row, 6] = float(phrase in self.joined[candidates[row]])
        n_grams = np.array([len(t.grams) for t in texts], dtype=np.int64)
        if n_grams.any():
            grams = self.grams.present_batch(owners, candidates, [t.grams for t in texts])
            own_grams = n_grams[owners]
            with_grams = own_grams > 0
            out[with_grams, 8] = grams.sum(axis=1)[with_grams] / own_grams[with_grams]
        out[:, 7] = self.log_len[candidates]
        return out
