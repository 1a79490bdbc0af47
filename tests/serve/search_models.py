"""A tiny real search model for serving tests: word-level tokenizer and bag-of-words encoder.

The same kind of model ``tests/models/test_search_pipeline.py`` trains (an ONNX graph made
here, a real ``tokenizer.json``), so ``/v1/search`` runs end to end without torch.
"""

from __future__ import annotations

from pathlib import Path

from shopserve.data import DemoShopSpec, generate_demo_shop
from shopserve.models.base import TrainedModel
from shopserve.models.search import SearchTrainSpec, train_search
from shopserve.models.search.encoder import ExportedEncoder
from shopserve.testing import bag_of_words_encoder, word_tokenizer


def train_tiny_search(root: Path) -> TrainedModel:
    shop = generate_demo_shop(DemoShopSpec(seed=3, products=300, queries=100))
    titles = [str(t) for t in shop.catalog.column("title").to_pylist()]
    vocab = word_tokenizer(root / "tokenizer.json", titles)
    bag_of_words_encoder(root / "encoder.onnx", vocab)
    encoder = ExportedEncoder(root / "encoder.onnx", root / "tokenizer.json")
    return train_search(shop, root / "model", SearchTrainSpec(epochs=30), encoder=encoder)
