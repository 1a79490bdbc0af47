"""The search pipeline on a small demo catalog, with a tiny bag-of-words encoder made here.

The encoder is a real ONNX graph (embedding lookup, mean pooling, L2 norm) and a real
``tokenizer.json``, so training, serving and evaluation run as they do with MiniLM, without torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from shopserve.data import DemoShopSpec, generate_demo_shop
from shopserve.errors import ConflictError, InputError, IntegrityError
from shopserve.models import evaluate, load_pipeline
from shopserve.models.base import Hit, TrainedModel
from shopserve.models.search import SearchPipeline, SearchTrainSpec, train_search
from shopserve.models.search.encoder import ExportedEncoder
from shopserve.testing import ENCODER_INPUTS, bag_of_words_encoder, word_tokenizer
from shopserve.types import ModelKind


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    root = tmp_path_factory.mktemp("search")
    shop = generate_demo_shop(DemoShopSpec(seed=3, products=600, queries=200))
    titles = [str(t) for t in shop.catalog.column("title").to_pylist()]
    vocab = word_tokenizer(root / "tokenizer.json", titles)
    bag_of_words_encoder(root / "encoder.onnx", vocab)
    encoder = ExportedEncoder(root / "encoder.onnx", root / "tokenizer.json")
    return train_search(shop, root / "model", SearchTrainSpec(epochs=100), encoder=encoder)


@pytest.fixture(scope="module")
def pipe(trained: TrainedModel) -> SearchPipeline:
    loaded = load_pipeline(ModelKind.SEARCH, trained.config, trained.files)
    assert isinstance(loaded, SearchPipeline)
    return loaded


def test_trained_model_is_ready_for_the_registry(trained: TrainedModel) -> None:
    assert trained.kind is ModelKind.SEARCH
    assert trained.config["graph"] == "encoder.onnx"
    assert {"encoder.onnx", "eval.parquet", "index.hnsw", "reranker.onnx"} <= set(trained.files)
    assert all(p.is_file() for p in trained.files.values())
    assert trained.signature is not None
    assert [s.name for s in trained.signature.inputs] == list(ENCODER_INPUTS)
    assert trained.data_hash.startswith("sha256:")
    assert trained.metrics["eval_queries"] >= 20


def test_pipeline_at_least_matches_bm25_and_beats_the_encoder(trained: TrainedModel) -> None:
    m = trained.metrics
    assert m["ndcg_at_10"] >= m["bm25_ndcg_at_10"] - 0.005, m
    assert m["ndcg_at_10"] > m["encoder_ndcg_at_10"], m
    assert m["recall_at_100"] >= m["bm25_recall_at_100"] - 0.01, m


def test_evaluate_through_the_dispatcher_gives_the_recorded_metrics(
    trained: TrainedModel, pipe: SearchPipeline
) -> None:
    metrics = evaluate(pipe, trained.files["eval.parquet"])
    for key in ("ndcg_at_10", "recall_at_100", "bm25_ndcg_at_10", "encoder_ndcg_at_10"):
        assert metrics[key] == pytest.approx(trained.metrics[key], abs=1e-9)


def test_search_returns_k_hits_best_first_with_titles(pipe: SearchPipeline) -> None:
    query = pipe.titles[5].split()[-1] + " " + pipe.titles[5].split()[0]
    results = pipe.search([query, pipe.titles[7]], k=5)
    assert len(results) == 2
    for hits in results:
        assert len(hits) == 5
        assert all(isinstance(h, Hit) and isinstance(h.product_id, str) for h in hits)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        for h in hits:
            assert pipe.titles[pipe.product_ids.index(h.product_id)] == h.title
    assert pipe.product_ids[7] in [h.product_id for h in results[1]]  # its own full title


def test_run_tensors_is_the_encoder_graph(pipe: SearchPipeline) -> None:
    feed = pipe.encoder.tokenizer([pipe.titles[0], pipe.titles[3] + " " + pipe.titles[4]])
    out = pipe.run_tensors(feed)["embedding"]
    assert out.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    assert [s.name for s in pipe.signature.outputs] == ["embedding"]


def test_featurize_turns_eval_rows_into_encoder_inputs(
    trained: TrainedModel, pipe: SearchPipeline
) -> None:
    rows = pq.read_table(trained.files["eval.parquet"])
    feed = pipe.featurize(rows)
    n = len(set(rows.column("query").to_pylist()))
    assert sorted(feed) == sorted(ENCODER_INPUTS)
    assert feed["input_ids"].shape[0] == n
    assert pipe.run_tensors(feed)["embedding"].shape == (n, 32)
    with pytest.raises(InputError, match="'query' column"):
        pipe.featurize(rows.drop_columns(["query"]))


@pytest.mark.parametrize(
    ("queries", "k", "message"),
    [
        ([], 10, "at least one query"),
        ([""], 10, r"queries\[0\]: expected non-empty text"),
        (["drill", "   "], 10, r"queries\[1\]: expected non-empty text"),
        (["x" * 513], 10, r"queries\[0\]: 513 characters, the limit is 512"),
        (["drill"], 0, "k must be between 1 and 100"),
        (["drill"], 101, "k must be between 1 and 100, got 101"),
    ],
)
def test_bad_queries_are_refused_with_a_clear_message(
    pipe: SearchPipeline, queries: list[str], k: int, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        pipe.search(queries, k)


def test_a_model_trained_on_other_features_is_refused(trained: TrainedModel) -> None:
    config = {**trained.config, "features": ["bm25", "cosine"]}
    with pytest.raises(IntegrityError, match=r"trained on features \['bm25', 'cosine'\]"):
        load_pipeline(ModelKind.SEARCH, config, trained.files)


def test_training_refuses_a_folder_that_holds_files(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "keep.txt").write_text("mine")
    shop = generate_demo_shop(DemoShopSpec(seed=1, products=50, queries=20))
    with pytest.raises(ConflictError, match="not an empty folder"):
        train_search(shop, tmp_path / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert [p.name for p in (tmp_path / "model").iterdir()] == ["keep.txt"]


def test_serving_needs_neither_torch_nor_transformers(trained: TrainedModel) -> None:
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from shopserve.models import load_pipeline\n"
        "from shopserve.types import ModelKind\n"
        "spec = json.loads(sys.argv[1])\n"
        "files = {k: Path(v) for k, v in spec['files'].items()}\n"
        "pipe = load_pipeline(ModelKind.SEARCH, spec['config'], files)\n"
        "hits = pipe.search(['drill'], 3)\n"
        "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "print(json.dumps({'hits': len(hits[0]), 'heavy': heavy}))\n"
    )
    spec = {"config": trained.config, "files": {k: str(v) for k, v in trained.files.items()}}
    done = subprocess.run([sys.executable, "-c", script, json.dumps(spec)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"hits": 3, "heavy": []}


def one_query_at_a_time(
    pipe: SearchPipeline, queries: list[str], k: int
) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[tuple[np.ndarray, np.ndarray]]]:
    """Candidates and ranking by their per-query definition (what the batched code replaced):
    BM25 of each query alone, its top ``candidates`` ∪ its ANN neighbours, its features."""
    from shopserve.models.search.bm25 import top_n
    from shopserve.models.search.reranker import RERANK_INPUT, RERANK_OUTPUT

    embedded = pipe.encode(queries)
    n = pipe.settings.candidates
    ann_ids, _ = pipe.index.query(embedded, n, pipe.settings.ef_search)
    found = []
    for query, vector, dense in zip(queries, embedded, ann_ids, strict=True):
        bm25_all = pipe.bm25.scores(query)
        lexical, _ = top_n(bm25_all, n, positive_only=True)
        cands = np.unique(np.concatenate([dense[dense >= 0], lexical]))
        cosine = pipe.vectors[cands] @ vector
        found.append((cands, pipe.title_features.pairs(query, cands, bm25_all[cands], cosine)))
    flat = pipe.reranker.run({RERANK_INPUT: np.concatenate([f for _, f in found])})[RERANK_OUTPUT]
    ranked, start = [], 0
    for cands, _ in found:
        order, values = top_n(flat[start : start + len(cands)], min(k, len(cands)))
        start += len(cands)
        ranked.append((cands[order], values))
    return found, ranked


@pytest.mark.parametrize("chunk_rows", [None, 3])
def test_a_batch_gives_what_each_query_gives_alone_bit_for_bit(
    pipe: SearchPipeline, monkeypatch: pytest.MonkeyPatch, chunk_rows: int | None
) -> None:
    import shopserve.models.search.pipeline as pipeline

    if chunk_rows is not None:  # the batch is taken in chunks of this many queries
        monkeypatch.setattr(pipeline, "CHUNK_CELLS", chunk_rows * len(pipe.titles))
    queries = [pipe.titles[i] for i in range(0, 200, 9)]
    queries += ["drill", "zzzz qqqq", "the", "white", pipe.titles[5], "cordless drill drill"]
    assert pipe.settings.candidates < len(pipe.titles)  # so that BM25 cuts some queries
    found, ranked = one_query_at_a_time(pipe, queries, 20)
    got = pipe.candidates(queries)
    assert len(got) == len(found)
    for (docs, feats), (want_docs, want_feats) in zip(got, found, strict=True):
        np.testing.assert_array_equal(docs, want_docs)
        np.testing.assert_array_equal(feats, want_feats)
    for (docs, scores), (want_docs, want_scores) in zip(
        pipe.rank(queries, 20), ranked, strict=True
    ):
        np.testing.assert_array_equal(docs, want_docs)
        np.testing.assert_array_equal(scores, want_scores)
