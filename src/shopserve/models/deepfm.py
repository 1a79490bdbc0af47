"""A DeepFM-like CTR model in torch (shared embeddings → FM + MLP), exported to ONNX.

Needs the ``[train]`` extra; torch is imported only here, and only when this trainer runs.
"""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from shopserve.errors import DependencyError, require
from shopserve.models.features import FeatureSpec
from shopserve.models.fm_onnx import OPSET

if TYPE_CHECKING:
    from shopserve.models.ctr import CtrTrainSpec

Split = tuple[dict[str, np.ndarray], np.ndarray]


def _build(torch: Any, n_dense: int, n_cat: int, n_buckets: int, k: int,
           hidden: tuple[int, ...]) -> Any:
    nn = torch.nn

    class DeepFM(nn.Module):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(n_buckets, k)
            self.lin_cat = nn.Embedding(n_buckets, 1)
            self.dense_emb = nn.Parameter(torch.randn(n_dense, k) * 0.01)
            self.lin_dense = nn.Linear(n_dense, 1)
            layers: list[Any] = []
            width = (n_cat + n_dense) * k
            for h in hidden:
                layers += [nn.Linear(width, h), nn.ReLU()]
                width = h
            layers.append(nn.Linear(width, 1))
            self.mlp = nn.Sequential(*layers)
            nn.init.normal_(self.emb.weight, std=0.01)
            nn.init.zeros_(self.lin_cat.weight)

        def forward(self, dense: Any, cat: Any) -> Any:
            e = torch.cat([self.emb(cat), dense.unsqueeze(2) * self.dense_emb], dim=1)
            s = e.sum(dim=1)
            pair = 0.5 * ((s * s).sum(dim=1) - (e * e).sum(dim=(1, 2)))
            linear = self.lin_dense(dense).squeeze(1) + self.lin_cat(cat).sum(dim=(1, 2))
            deep = self.mlp(e.flatten(1)).squeeze(1)
            return torch.sigmoid(linear + pair + deep)

    return DeepFM()


def _val_loss(torch: Any, model: Any, valid: Split) -> float:
    model.eval()
    with torch.no_grad():
        p = model(torch.from_numpy(valid[0]["dense"]), torch.from_numpy(valid[0]["cat"]))
        y = torch.from_numpy(valid[1].astype(np.float32))
        loss = float(torch.nn.functional.binary_cross_entropy(p.clamp(1e-7, 1 - 1e-7), y))
    model.train()
    return loss


def _embedding_penalty(torch: Any, model: Any, cat: Any) -> Any:
    """Mean squared norm of the factor and linear weights of the categories in the batch."""
    return (model.emb(cat).pow(2).sum(dim=(1, 2)) + model.lin_cat(cat).pow(2).sum(dim=(1, 2))
            ).mean()


def train_deepfm(spec: CtrTrainSpec, features: FeatureSpec, train: Split,
                 valid: Split, remap: np.ndarray) -> tuple[onnx.ModelProto, float]:
    """Train with AdamW, L2 on the embeddings a batch uses, and early stopping on the
    validation loss; export the best epoch with rare buckets answering as missing ones, checked
    against torch on the validation rows (the difference is returned with the graph)."""
    require("torch", "train")
    try:
        torch: Any = importlib.import_module("torch")  # untyped here: torch stays optional
    except ImportError as exc:  # present but broken install
        raise DependencyError(f"torch cannot be imported: {exc}") from exc
    torch.manual_seed(spec.seed)
    fm = spec.fm
    model = _build(torch, len(features.numeric), len(features.categorical),
                   features.total_buckets, max(fm.factors, 1), fm.hidden)
    embeddings = {id(model.emb.weight), id(model.lin_cat.weight)}
    opt = torch.optim.AdamW([
        {"params": [p for p in model.parameters() if id(p) not in embeddings],
         "weight_decay": fm.l2},
        {"params": [model.emb.weight, model.lin_cat.weight], "weight_decay": 0.0},
    ], lr=fm.lr)
    dense, cat = torch.from_numpy(train[0]["dense"]), torch.from_numpy(train[0]["cat"])
    y = torch.from_numpy(train[1].astype(np.float32))
    gen = torch.Generator().manual_seed(spec.seed)
    best_state, best = {k: v.clone() for k, v in model.state_dict().items()}, float("inf")
    stale = 0
    for _ in range(fm.epochs):
        order = torch.randperm(len(y), generator=gen)
        for start in range(0, len(y), fm.batch_size):
            idx = order[start : start + fm.batch_size]
            loss = torch.nn.functional.binary_cross_entropy(model(dense[idx], cat[idx]), y[idx])
            loss = loss + fm.l2_embed * _embedding_penalty(torch, model, cat[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        val = _val_loss(torch, model, valid)
        if val < best - 1e-5:
            best, stale = val, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        elif (stale := stale + 1) >= fm.patience:
            break
    best_state["emb.weight"] = best_state["emb.weight"][torch.from_numpy(remap)]
    best_state["lin_cat.weight"] = best_state["lin_cat.weight"][torch.from_numpy(remap)]
    model.load_state_dict(best_state)
    return export_onnx(torch, model.eval(), len(features.numeric), len(features.categorical),
                       valid[0])


def export_onnx(torch: Any, model: Any, n_dense: int, n_cat: int,
                check: dict[str, np.ndarray]) -> tuple[onnx.ModelProto, float]:
    """The model as ONNX with inputs ``dense``/``cat`` and output ``score``, batch axis dynamic,
    and its largest difference to torch on the real rows ``check`` (at most 1e-5 allowed)."""
    from shopserve.optimize.exports import TorchExportSpec, export_checked

    spec = TorchExportSpec(
        model_name="ctr (DeepFM)", input_names=("dense", "cat"), output_names=("score",),
        dynamic_axes={"dense": {0: "batch"}, "cat": {0: "batch"}, "score": {0: "batch"}},
        opset=OPSET, tolerance=1e-5)
    sample: dict[str, np.ndarray] = {"dense": np.zeros((2, n_dense), np.float32),
                                     "cat": np.zeros((2, n_cat), np.int64)}
    rows = {k: v[:1024] for k, v in check.items()}
    with tempfile.TemporaryDirectory(prefix="shopserve-deepfm-") as tmp:
        diff = export_checked(model, Path(tmp) / "model.onnx", spec, sample, [rows])
        graph = onnx.load(str(Path(tmp) / "model.onnx"))
    onnx.checker.check_model(graph)
    return graph, diff
