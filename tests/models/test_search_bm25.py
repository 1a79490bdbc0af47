"""BM25 over titles and the ranking metrics of the search model, on tiny hand-made data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shopserve.errors import InputError
from shopserve.models.search import BM25Index, analyze
from shopserve.models.search.bm25 import top_n
from shopserve.models.search.metrics import mean_metrics, ndcg_at, recall_at, topk_agreement

DOCS = [
    "Cordless Drill 18V",
    "drill bits set",
    "garden hose 50 ft",
    "cordless leaf blower",
]


def expected_bm25(query: str, docs: list[str], k1: float = 1.2, b: float = 0.75) -> list[float]:
    """Okapi BM25 written out term by term, independent of the index's postings layout."""
    analyzed = [analyze(d) for d in docs]
    avg = sum(len(a) for a in analyzed) / len(analyzed)
    n = len(docs)
    out = []
    for terms in analyzed:
        score = 0.0
        for term in analyze(query):
            df = sum(term in a for a in analyzed)
            if df == 0:
                continue
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            tf = terms.count(term)
            score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(terms) / avg))
        out.append(score)
    return out


def test_analyze_lowercases_splits_and_drops_plural_s() -> None:
    assert analyze("Cordless DRILLS, 3.5 in. Bits") == ["cordless", "drill", "3.5", "in", "bit"]
    assert analyze("glass") == ["glass"]  # a double s is not a plural


@pytest.mark.parametrize("query", ["cordless drill", "drill", "hose", "drill drill bits", "saw"])
def test_scores_match_the_okapi_formula(query: str) -> None:
    index = BM25Index(DOCS)
    np.testing.assert_allclose(index.scores(query), expected_bm25(query, DOCS), rtol=1e-12)


def test_top_ranks_the_best_match_first_and_skips_non_matches() -> None:
    index = BM25Index(DOCS)
    ids, scores = index.top("cordless drill", 10)
    assert ids[0] == 0  # the only title with both terms
    assert set(ids) == {0, 1, 3}
    assert list(scores) == sorted(scores, reverse=True)
    assert index.top("chainsaw", 5)[0].size == 0


def test_rare_terms_weigh_more_than_common_ones() -> None:
    index = BM25Index(["red drill", "red hose", "red saw", "blue saw"])
    red, blue = index.scores("red"), index.scores("blue")
    assert blue[3] > red[0] > 0


def test_top_n_breaks_ties_by_position() -> None:
    ids, values = top_n(np.array([1.0, 3.0, 3.0, 0.5]), 3)
    assert ids.tolist() == [1, 2, 0]
    assert values.tolist() == [3.0, 3.0, 1.0]


def test_bad_index_input_is_refused_with_a_reason() -> None:
    with pytest.raises(InputError, match="at least one document"):
        BM25Index([])
    with pytest.raises(InputError, match=r"b=1\.5"):
        BM25Index(DOCS, b=1.5)


def test_ndcg_and_recall_on_graded_judgments() -> None:
    judged = {"a": 3.0, "b": 2.0, "c": 1.0}
    assert ndcg_at(["a", "b", "x"], judged, 10) == pytest.approx(1.0)
    swapped = ndcg_at(["b", "a"], judged, 10)
    ideal = 2.0 + 1.0 / math.log2(3)
    assert swapped == pytest.approx((1.0 + 2.0 / math.log2(3)) / ideal)
    assert recall_at(["x", "b"], judged, 100) == pytest.approx(0.5)
    assert ndcg_at(["a"], {"c": 1.0}, 10) is None  # nothing to gain: left out of the mean
    assert mean_metrics([["a"], ["z"]], [judged, {"z": 1.0}]) == {
        "ndcg_at_10": pytest.approx(2.0 / ideal), "recall_at_100": pytest.approx(0.5)}
    assert topk_agreement(np.array([[1, 2], [3, 4]]), np.array([[2, 1], [3, 5]])) == 0.75


def test_trigram_coverage_survives_a_typo_that_bm25_misses() -> None:
    from shopserve.models.search.features import FEATURE_NAMES, TitleFeatures, trigrams

    assert trigrams("Tap") == {" ta", "tap", "ap "}
    titles = ["toilet seat white", "garden hose"]
    index = BM25Index(titles)
    feats = TitleFeatures(titles, index).pairs(
        "toliet", np.array([0, 1]), index.scores("toliet")[[0, 1]], np.zeros(2, np.float32))
    column = FEATURE_NAMES.index("trigram_coverage")
    assert index.scores("toliet").tolist() == [0.0, 0.0]
    assert feats[0, column] > 0.3 > feats[1, column] >= 0.0


def test_a_batch_of_queries_scores_like_each_query_alone_bit_for_bit() -> None:
    from shopserve.data import DemoShopSpec, generate_demo_shop

    shop = generate_demo_shop(DemoShopSpec(seed=7, products=300, queries=60))
    titles = [str(t) for t in shop.catalog.column("title").to_pylist()]
    index = BM25Index(titles)
    queries = [str(q) for q in dict.fromkeys(shop.judgments.column("query").to_pylist())]
    queries += ["drill drill DRILLS", "zzzz", "!!!", titles[3], "a", queries[0]]
    batch = index.scores_batch(queries)
    assert batch.shape == (len(queries), len(titles)) and batch.dtype == np.float64
    for row, query in zip(batch, queries, strict=True):
        np.testing.assert_array_equal(row, index.scores(query), err_msg=query)
    assert index.scores_batch(["zzzz", "!!!"]).tolist() == [[0.0] * len(titles)] * 2


@pytest.mark.parametrize("n", [1, 3, 5, 40])
def test_top_n_sets_are_top_n_row_by_row_ties_at_the_cut_included(n: int) -> None:
    from shopserve.models.search.bm25 import top_n_sets

    rng = np.random.default_rng(n)
    scores = rng.integers(-2, 4, size=(9, 60)).astype(np.float64)  # many ties, some negatives
    scores[2] = 0.0  # no positive entry
    scores[3, :] = -1.0
    scores[4, : n // 2] = 1.0  # fewer positives than n
    scores[4, n // 2 :] = 0.0
    rows, cols = top_n_sets(scores, n)
    assert np.all(np.diff(rows) >= 0)
    for r, row in enumerate(scores):
        want = top_n(row, n, positive_only=True)[0]
        got = cols[rows == r]
        assert got.tolist() == sorted(want.tolist()), (r, n)
