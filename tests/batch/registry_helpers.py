"""Reference models in a real registry for batch tests: CTR and recommend trained on the small
demo shop, and a tiny search model (word-level tokenizer, bag-of-words encoder) made here."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pyarrow.parquet as pq
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from shopserve.data import Shop
from shopserve.models import evaluate, load_pipeline
from shopserve.models.search.ann import VectorIndex
from shopserve.models.search.encoder import TextEncoder
from shopserve.models.search.features import FEATURE_NAMES
from shopserve.models.search.reranker import LinearRanker, ranker_to_onnx
from shopserve.models.search.tokenizer import QueryTokenizer
from shopserve.registry import ModelVersion, Registry
from shopserve.types import ModelKind

DIM = 16


def cli_env(home: Path) -> dict[str, str]:
    return {**os.environ, "SHOPSERVE_HOME": str(home)}


def make_tokenizer(path: Path, titles: list[str]) -> Path:
    words = sorted({w for t in titles for w in t.lower().split()})
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
    vocab.update({w: i + 4 for i, w in enumerate(words)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.save(str(path))
    return path


def make_encoder(path: Path, vocab_size: int, seed: int = 0) -> Path:
    """input_ids/attention_mask/token_type_ids -> masked mean of word vectors -> unit vector."""
    table = np.random.default_rng(seed).normal(size=(vocab_size, DIM)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["vecs"], axis=0),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["vecs", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
        helper.make_node("LpNormalization", ["summed"], ["embedding"], axis=1, p=2),
    ]
    ints = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
            for n in ("input_ids", "attention_mask", "token_type_ids")]
    graph = helper.make_graph(
        nodes, "bag_of_words", ints,
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", DIM])],
        [numpy_helper.from_array(table, "table"),
         numpy_helper.from_array(np.array([2], np.int64), "axis2"),
         numpy_helper.from_array(np.array([1], np.int64), "axis1")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def register_search(shop: Shop, registry: Registry, out: Path, products: int) -> ModelVersion:
    """A search version over the first ``products`` products of the shop's catalog."""
    out.mkdir(parents=True)
    catalog = shop.catalog.slice(0, products)
    titles = [str(t) for t in catalog.column("title").to_pylist()]
    all_titles = [str(t) for t in shop.catalog.column("title").to_pylist()]
    tok = make_tokenizer(out / "tokenizer.json", all_titles)
    vocab = Tokenizer.from_file(str(tok)).get_vocab_size()
    make_encoder(out / "encoder.onnx", vocab)
    vectors = TextEncoder(out / "encoder.onnx", QueryTokenizer(tok, 48)).encode(titles)
    np.save(out / "embeddings.npy", vectors, allow_pickle=False)
    VectorIndex.build(vectors).save(out / "index.hnsw")
    pq.write_table(catalog, out / "catalog.parquet")
    n = len(FEATURE_NAMES)
    weights = np.zeros(n, np.float32)
    weights[FEATURE_NAMES.index("cosine")] = 1.0
    ranker = LinearRanker(np.zeros(n, np.float32), np.ones(n, np.float32), weights)
    (out / "reranker.onnx").write_bytes(ranker_to_onnx(ranker))
    judged = shop.judgments.select(["query", "product_id", "title", "relevance"])
    pq.write_table(judged, out / "eval.parquet")
    files = {p.name: p for p in out.iterdir()}
    config = {"graph": "encoder.onnx", "search": {}}
    metrics = evaluate(load_pipeline(ModelKind.SEARCH, config, files), out / "eval.parquet")
    return registry.register("search", files=files, kind=ModelKind.SEARCH, config=config,
                             metrics=metrics)
