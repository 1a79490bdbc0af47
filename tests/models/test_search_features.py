"""The re-ranker's pair features, computed with numpy over interned title data, equal the plain
per-candidate definition of every feature (the code they replaced), bit for bit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from shopserve.data import DemoShopSpec, generate_demo_shop
from shopserve.models.search.bm25 import BM25Index, analyze, idf_of
from shopserve.models.search.features import FEATURE_NAMES, TitleFeatures, trigrams
from shopserve.testing import bag_of_words_encoder, word_tokenizer


def reference_pairs(titles: list[str], bm25_index: BM25Index, query: str, candidates: np.ndarray,
                    bm25: np.ndarray, cosine: np.ndarray) -> np.ndarray:
    """Each feature by its definition, one candidate at a time."""
    terms = sorted(set(analyze(query)))
    idf = {t: idf_of(bm25_index, t) for t in terms}
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
        analyzed = analyze(titles[doc])
        joined = " " + " ".join(analyzed) + " "
        hits = [t for t in terms if t in set(analyzed)]
        out[row, 4] = len(hits) / len(terms) if terms else 0.0
        out[row, 5] = sum(idf[t] for t in hits) / idf_total
        out[row, 6] = float(bool(terms) and phrase in joined)
        if grams:
            out[row, 8] = len(grams & trigrams(joined)) / len(grams)
        out[row, 7] = np.log1p(np.float32(len(analyzed)))
    return out


@dataclass(frozen=True)
class Catalog:
    titles: list[str]
    queries: list[str]
    index: BM25Index
    features: TitleFeatures


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    shop = generate_demo_shop(DemoShopSpec(seed=5, products=300, queries=80))
    titles = [str(t) for t in shop.catalog.column("title").to_pylist()]
    titles += ["", "Glasses 3.5 in. bass", "a"]
    queries = [str(q) for q in dict.fromkeys(shop.judgments.column("query").to_pylist())]
    index = BM25Index(titles)
    return Catalog(titles, queries, index, TitleFeatures(titles, index))


def test_features_equal_their_per_candidate_definition(catalog: Catalog) -> None:
    titles, queries, index, features = (catalog.titles, catalog.queries, catalog.index,
                                        catalog.features)
    rng = np.random.default_rng(0)
    odd = ["toliet seat", "glasses bass", "3.5 in.", "!!!", "a", "zzzz qqqq", titles[0],
           titles[0] + " " + titles[0]]
    for query in queries + odd:
        cands = np.unique(rng.integers(0, len(titles), size=int(rng.integers(0, 60))))
        cands = np.concatenate([cands, np.arange(len(titles) - 3, len(titles))])
        scores = index.scores(query)[cands]
        cosine = rng.normal(size=len(cands)).astype(np.float32)
        got = features.pairs(query, cands, scores, cosine)
        want = reference_pairs(titles, index, query, cands, scores, cosine)
        np.testing.assert_array_equal(got, want, err_msg=query)


def test_no_candidates_give_an_empty_matrix(catalog: Catalog) -> None:
    empty = np.zeros(0, dtype=np.int64)
    got = catalog.features.pairs("drill", empty, np.zeros(0), np.zeros(0, np.float32))
    assert got.shape == (0, len(FEATURE_NAMES))


def test_encoder_runs_unpadded_length_groups_in_the_callers_order(tmp_path: Path) -> None:
    from shopserve.models.search.encoder import EMBEDDING_OUTPUT, TextEncoder
    from shopserve.models.search.tokenizer import QueryTokenizer

    texts = ["red drill", "a", "cordless hammer drill with two batteries", "red drill",
             "garden hose reel", "white toilet seat", "hose", "zz unknown words here"]
    vocab = word_tokenizer(tmp_path / "tokenizer.json", texts)
    bag_of_words_encoder(tmp_path / "encoder.onnx", vocab)
    tokenizer = QueryTokenizer(tmp_path / "tokenizer.json", max_tokens=6)
    encoder = TextEncoder(tmp_path / "encoder.onnx", tokenizer)
    alone = np.concatenate([encoder.model.run(tokenizer([t]))[EMBEDDING_OUTPUT] for t in texts])
    for batch_size in (1, 3, 64):
        np.testing.assert_allclose(encoder.encode(texts, batch_size), alone, atol=1e-6)


def test_a_batch_of_queries_gets_the_rows_each_query_gets_alone(catalog: Catalog) -> None:
    titles, queries, index, features = (catalog.titles, catalog.queries, catalog.index,
                                        catalog.features)
    rng = np.random.default_rng(1)
    batch = [*queries[:20], "!!!", "toliet seat", "zzzz qqqq", titles[0], queries[0]]
    cands = [np.unique(rng.integers(0, len(titles), size=int(rng.integers(0, 80))))
             for _ in batch]
    cands[3] = np.zeros(0, dtype=np.int64)  # a query without candidates
    bounds = np.concatenate([[0], np.cumsum([len(c) for c in cands])])
    docs = np.concatenate(cands).astype(np.int64)
    bm25 = np.concatenate([index.scores(q)[c] for q, c in zip(batch, cands, strict=True)])
    cosine = rng.normal(size=len(docs)).astype(np.float32)
    got = features.pairs_batch(batch, bounds, docs, bm25, cosine)
    for i, query in enumerate(batch):
        a, b = bounds[i], bounds[i + 1]
        want = reference_pairs(titles, index, query, docs[a:b], bm25[a:b], cosine[a:b])
        np.testing.assert_array_equal(got[a:b], want, err_msg=query)


def test_bitmap_and_scan_agree_for_lists_in_any_order(catalog: Catalog) -> None:
    from shopserve.models.search.features import SetRows

    titles, queries = catalog.titles, catalog.queries
    sets = [trigrams(t) for t in titles]
    mapped, scanned = SetRows(sets), SetRows(sets, bitmap_bytes=0)
    assert mapped.bits is not None and scanned.bits is None
    rng = np.random.default_rng(2)
    wanted = [sorted(trigrams(q)) for q in queries[:12]] + [[], ["zzz", "qqq"]]
    owners = rng.integers(0, len(wanted), size=400)  # unsorted, repeated documents
    docs = rng.integers(0, len(titles), size=400)
    got = mapped.present_batch(owners, docs, wanted)
    np.testing.assert_array_equal(got, scanned.present_batch(owners, docs, wanted))
    for p, (owner, doc) in enumerate(zip(owners, docs, strict=True)):
        want = [item in sets[doc] for item in wanted[owner]]
        assert got[p, : len(want)].tolist() == want
        assert not got[p, len(want) :].any()
