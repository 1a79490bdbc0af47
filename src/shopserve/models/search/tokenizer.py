"""Serving-time tokenization for the search encoder: the ``tokenizers`` library only.

Reads the model's ``tokenizer.json`` and turns text into the three int64 tensors the encoder
graph takes, so that serving never needs torch or transformers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from shopserve.errors import InputError, IntegrityError

ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class QueryTokenizer:
    """Texts to padded ``input_ids``/``attention_mask``/``token_type_ids`` (int64)."""

    def __init__(self, path: Path, max_tokens: int, pad_to: int | None = None) -> None:
        if max_tokens < 2:
            raise InputError(f"max_tokens must be at least 2 ([CLS] and [SEP]), got {max_tokens}")
        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on a bad file
            raise IntegrityError(f"{path}: not a readable tokenizer.json: {exc}") from exc
        self.max_tokens = max_tokens
        self._tok.enable_truncation(max_length=max_tokens)
        pad_id = self._tok.token_to_id("[PAD]")
        self._tok.enable_padding(
            pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]", length=pad_to
        )

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Tokenize a batch; the rows are padded to the longest (or to ``pad_to``)."""
        if not texts:
            raise InputError("texts: expected at least one text, got an empty list")
        encodings = self._tok.encode_batch(texts)
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        types = np.asarray([e.type_ids for e in encodings], dtype=np.int64)
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}

    def tokens(self, text: str) -> list[str]:
        """The word pieces of ``text`` (without padding), for logs and tests."""
        return [t for t in self._tok.encode(text).tokens if t != "[PAD]"]
