"""The CTR ranking pipeline: rows → featurizer → ONNX graph → click probabilities.

Used by serving, batch scoring and optimize; it never imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from shopserve.errors import InputError, NotFoundError, SpecError
from shopserve.models.features import FeatureSpec, Rows, featurizer
from shopserve.models.metrics import log_loss, roc_auc
from shopserve.runtime.onnx import OnnxModel, SessionSettings
from shopserve.types import ModelSignature

EVAL_BATCH = 4096


def artifact(files: Mapping[str, Path], name: str) -> Path:
    """The path of artifact ``name``, or a ``NotFoundError`` listing what there is."""
    if name not in files:
        raise NotFoundError(f"model artifact {name!r} is missing; it has {sorted(files)}")
    return Path(files[name])


class RankPipeline:
    """Scores candidate rows (one click probability each) with the version's ONNX graph."""

    def __init__(self, config: Mapping[str, Any], files: Mapping[str, Path],
                 settings: SessionSettings | None = None) -> None:
        try:
            self.features = FeatureSpec.model_validate(config["features"])
        except (KeyError, ValidationError) as exc:
            raise SpecError(f"rank model config: bad or missing 'features': {exc}") from exc
        self.label = str(config.get("label", "label"))
        self.featurizer = featurizer(self.features)  # compiled once: no per-call set-up
        self.graph_name = str(config.get("graph", "model.onnx"))
        self.model = OnnxModel(artifact(files, self.graph_name), settings)

    @property
    def signature(self) -> ModelSignature:
        return self.model.signature

    def run_tensors(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.model.run(inputs)

    def rank(self, rows: Rows) -> np.ndarray:
        """Float32 scores, one per row, in the order given."""
        tensors = self.featurizer(rows)
        if len(tensors["dense"]) == 0:
            return np.zeros(0, dtype=np.float32)
        return np.asarray(self.model.run(tensors, check=False)["score"], dtype=np.float32)


def evaluate_rank(pipe: RankPipeline, eval_path: Path) -> dict[str, float]:
    """AUC and log loss of the pipeline on the held-out rows in ``eval_path``."""
    labels: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    for batch in pq.ParquetFile(eval_path).iter_batches(batch_size=EVAL_BATCH):
        labels.append(_labels(batch, pipe.label))
        scores.append(pipe.rank(batch))
    if not labels:
        raise InputError(f"{eval_path}: no evaluation rows")
    y, p = np.concatenate(labels), np.concatenate(scores)
    return {"auc": roc_auc(y, p), "logloss": log_loss(y, p), "rows": float(len(y))}


def _labels(batch: pa.RecordBatch, label: str) -> np.ndarray:
    if label not in batch.schema.names:
        raise InputError(f"evaluation rows have no label column {label!r}")
    col = batch.column(label)
    if col.null_count:
        raise InputError(f"label column {label!r} has missing values")
    values = np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
    if not np.isin(values, [0.0, 1.0]).all():
        raise InputError(f"label column {label!r} must hold only 0 and 1")
    return values
