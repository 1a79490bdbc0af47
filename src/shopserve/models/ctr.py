"""Training of the CTR ranking model (DeepFM, in numpy or torch) against a logistic baseline.

Both trainers write the same ONNX interface; the held-out rows go to ``eval.parquet``.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnx
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from shopserve.errors import InputError
from shopserve.models.base import EVAL_FILE, GRAPH_FILE, TrainedModel, file_hash
from shopserve.models.features import (
    CategoricalFeature,
    FeatureSpec,
    NumericFeature,
    NumericTransform,
    featurize,
    rare_bucket_remap,
)
from shopserve.models.fm import FmSpec, fm_logits, sigmoid, train_fm
from shopserve.models.fm_onnx import fm_to_onnx
from shopserve.models.metrics import log_loss, roc_auc
from shopserve.models.rank import RankPipeline, evaluate_rank
from shopserve.types import ModelKind

# The MLP of the reference DeepFM: wide enough to learn crosses the FM's dot products miss,
# and where int8 and pruning have real work to speed up.
DEFAULT_HIDDEN = (256, 128)


class CtrTrainer(enum.StrEnum):
    NUMPY = "numpy"  # DeepFM with hand-written gradients, no torch needed
    TORCH = "torch"  # the same DeepFM in torch, needs the [train] extra


class CtrTrainSpec(BaseModel):
    """Settings of ``train_ctr``: trainer, feature hashing, split and optimizer.

    ``fm`` sets both trainers' model (factors, MLP ``hidden`` sizes, L2, early stopping);
    ``min_count`` is the frequency threshold below which a hashed category level is treated
    as missing.
    """

    model_config = ConfigDict(frozen=True)

    trainer: CtrTrainer = CtrTrainer.NUMPY
    label: str = "label"
    buckets: int = Field(default=1000, ge=2)
    eval_fraction: float = Field(default=0.2, gt=0, lt=1)
    valid_fraction: float = Field(default=0.1, gt=0, lt=1)
    min_count: int = Field(default=3, ge=1)
    fm: FmSpec = FmSpec(hidden=DEFAULT_HIDDEN)
    baseline: FmSpec = FmSpec(factors=0, lr=0.01, l2=1e-5, l2_embed=1e-4)
    seed: int = 0


class _HasClicks(Protocol):
    @property
    def clicks(self) -> pa.Table: ...


def default_features(table: pa.Table, label: str, buckets: int) -> FeatureSpec:
    """Numbers become log-standardized dense features, text columns hashed categoricals."""
    numeric, categorical = [], []
    for field in table.schema:
        if field.name == label:
            continue
        if pa.types.is_integer(field.type) or pa.types.is_floating(field.type):
            numeric.append(NumericFeature(name=field.name, transform=NumericTransform.LOG))
        elif pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            categorical.append(CategoricalFeature(name=field.name, buckets=buckets))
    if not numeric or not categorical:
        raise InputError(f"CTR training needs numeric and text columns besides {label!r}; "
                         f"got {table.schema.names}")
    return FeatureSpec(numeric=tuple(numeric), categorical=tuple(categorical))


def train_ctr(shop: _HasClicks, out_dir: Path, spec: CtrTrainSpec | None = None) -> TrainedModel:
    """Train on the shop's click log (``label``, ``I1..I13``, ``C1..C26``)."""
    return train_ctr_table(shop.clicks, out_dir, spec)


def _split(n: int, spec: CtrTrainSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.random.default_rng(spec.seed).permutation(n)
    n_eval = max(1, int(n * spec.eval_fraction))
    n_valid = max(1, int((n - n_eval) * spec.valid_fraction))
    return order[n_eval + n_valid :], order[n_eval : n_eval + n_valid], np.sort(order[:n_eval])


def _labels(table: pa.Table, label: str) -> np.ndarray:
    if label not in table.schema.names:
        raise InputError(f"training rows have no label column {label!r}: {table.schema.names}")
    col = table.column(label)
    y = np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
    if col.null_count or not np.isin(y, [0.0, 1.0]).all():
        raise InputError(f"label column {label!r} must hold only 0 and 1, without gaps")
    return y


def train_ctr_table(
    table: pa.Table, out_dir: Path, spec: CtrTrainSpec | None = None,
    features: FeatureSpec | None = None,
) -> TrainedModel:
    """Train the CTR model and its logistic baseline on ``table``; write model and eval rows."""
    spec = spec or CtrTrainSpec()
    y = _labels(table, spec.label)
    if len(y) < 20:
        raise InputError(f"CTR training needs at least 20 rows, got {len(y)}")
    tr, va, ev = _split(len(y), spec)
    features = features or default_features(table, spec.label, spec.buckets)
    features = features.fitted(table.take(tr))
    x_tr, x_va = featurize(features, table.take(tr)), featurize(features, table.take(va))
    x_ev = featurize(features, table.take(ev))
    out_dir.mkdir(parents=True, exist_ok=True)
    remap = rare_bucket_remap(features, x_tr["cat"], spec.min_count)
    x_tr = {"dense": x_tr["dense"], "cat": remap[x_tr["cat"]]}
    x_va = {"dense": x_va["dense"], "cat": remap[x_va["cat"]]}
    graph, export_diff = _fit_graph(spec, features, (x_tr, y[tr]), (x_va, y[va]), remap)
    onnx.save(graph, out_dir / GRAPH_FILE)
    base = train_fm(spec.baseline, x_tr, y[tr], x_va, y[va], features.total_buckets)
    base = base.remapped(remap)
    base_p = sigmoid(fm_logits(base, x_ev["dense"], x_ev["cat"]))
    pq.write_table(table.take(ev), out_dir / EVAL_FILE)
    files = {GRAPH_FILE: out_dir / GRAPH_FILE, EVAL_FILE: out_dir / EVAL_FILE}
    config: dict[str, Any] = {
        "graph": GRAPH_FILE, "label": spec.label, "trainer": spec.trainer.value,
        "features": features.model_dump(mode="json"),
    }
    pipe = RankPipeline(config, files)
    metrics = evaluate_rank(pipe, files[EVAL_FILE])
    metrics["baseline_auc"] = roc_auc(y[ev], base_p)
    metrics["baseline_logloss"] = log_loss(y[ev], base_p)
    if export_diff is not None:  # torch source: largest |ONNX - torch| on validation rows
        metrics["export_max_abs_diff"] = export_diff
    return TrainedModel(kind=ModelKind.RANK, files=files, config=config,
                        signature=pipe.signature, metrics=metrics,
                        data_hash=file_hash(files[EVAL_FILE]))


def _fit_graph(
    spec: CtrTrainSpec, features: FeatureSpec,
    train: tuple[dict[str, np.ndarray], np.ndarray],
    valid: tuple[dict[str, np.ndarray], np.ndarray], remap: np.ndarray,
) -> tuple[onnx.ModelProto, float | None]:
    """The trained graph; rare buckets answer with their column's missing-bucket weights."""
    if spec.trainer is CtrTrainer.TORCH:
        from shopserve.models.deepfm import train_deepfm

        return train_deepfm(spec, features, train, valid, remap)
    params = train_fm(spec.fm, train[0], train[1], valid[0], valid[1], features.total_buckets)
    return fm_to_onnx(params.remapped(remap), len(features.categorical)), None
