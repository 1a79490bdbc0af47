"""A tiny real search model for serving tests: word-level tokenizer and bag-of-words encoder.

The same kind of model ``tests/models/test_search_pipeline.py`` trains (an ONNX graph made
here, a real ``tokenizer.json``), so ``/v1/search`` runs end to end without torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from shopserve.data import DemoShopSpec, generate_demo_shop
from shopserve.models.base import TrainedModel
from shopserve.models.search import SearchTrainSpec, train_search
from shopserve.models.search.encoder import ExportedEncoder

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def write_tokenizer(path: Path, titles: list[str]) -> int:
    probe = pre_tokenizers.BertPreTokenizer()
    words = sorted({w.lower() for t in titles for w, _ in probe.pre_tokenize_str(t)})
    vocab = {tok: i for i, tok in enumerate(SPECIALS + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.save(str(path))
    return len(vocab)


def write_encoder(path: Path, vocab: int, dim: int = 32) -> None:
    """ids -> mean of word vectors over the mask -> unit length (named like MiniLM's export)."""
    table = np.random.default_rng(0).normal(size=(vocab, dim)).astype(np.float32)
    table[: len(SPECIALS)] = 0.0
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["words"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "last"], ["mask3"]),
        helper.make_node("Mul", ["words", "mask3"], ["kept"]),
        helper.make_node("ReduceSum", ["kept", "one"], ["total"], keepdims=0),
        helper.make_node("LpNormalization", ["total"], ["embedding"], axis=1, p=2),
    ]
    graph = helper.make_graph(
        nodes, "tiny_encoder",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
         for n in INPUTS],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        initializer=[numpy_helper.from_array(table, "table"),
                     numpy_helper.from_array(np.array([-1], np.int64), "last"),
                     numpy_helper.from_array(np.array([1], np.int64), "one")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))


def train_tiny_search(root: Path) -> TrainedModel:
    shop = generate_demo_shop(DemoShopSpec(seed=3, products=300, queries=100))
    titles = [str(t) for t in shop.catalog.column("title").to_pylist()]
    vocab = write_tokenizer(root / "tokenizer.json", titles)
    write_encoder(root / "encoder.onnx", vocab)
    encoder = ExportedEncoder(root / "encoder.onnx", root / "tokenizer.json")
    return train_search(shop, root / "model", SearchTrainSpec(epochs=30), encoder=encoder)
