"""The text encoder at serving time: tokenizer plus the exported ONNX graph.

The graph pools and L2-normalizes inside, so its ``embedding`` output is ready for cosine
similarity (a dot product) against the catalog vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shopserve.errors import IntegrityError
from shopserve.models.search.tokenizer import QueryTokenizer
from shopserve.runtime.onnx import OnnxModel, SessionSettings

EMBEDDING_OUTPUT = "embedding"


@dataclass(frozen=True)
class ExportedEncoder:
    """An encoder graph, its tokenizer file, and the largest difference to its source model."""

    graph: Path
    tokenizer: Path
    max_abs_diff: float = 0.0


class TextEncoder:
    """Batches of text to unit-length float32 vectors through an ONNX encoder graph."""

    def __init__(
        self,
        graph: Path | bytes,
        tokenizer: QueryTokenizer,
        settings: SessionSettings | None = None,
    ) -> None:
        self.model = OnnxModel(graph, settings)
        self.tokenizer = tokenizer
        if self.model.output_names != [EMBEDDING_OUTPUT]:
            raise IntegrityError(
                f"encoder graph: expected one output {EMBEDDING_OUTPUT!r}, "
                f"got {self.model.output_names}"
            )

    @property
    def dim(self) -> int:
        return int(self.model.signature.outputs[0].shape[-1])

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """``(len(texts), dim)`` float32; texts are sorted by length so batches pad little."""
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            feed = self.tokenizer([texts[i] for i in idx])
            out[idx] = self.model.run(feed, check=False)[EMBEDDING_OUTPUT]
        return out
