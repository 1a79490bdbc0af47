"""What a batch job runs on each chunk: a plain ONNX graph or a reference model's pipeline.

A ``PredictorSource`` is small and picklable, so every worker process builds its own session.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shopserve.errors import InputError, UsageError
from shopserve.runtime.onnx import OnnxModel, SessionSettings, check_tensor
from shopserve.types import ModelKind, TensorSpec


class Predictor(Protocol):
    """Scores a record batch; raises ``InputError`` when any row of it cannot be scored."""

    @property
    def needs(self) -> dict[str, pa.DataType]: ...

    def predict(self, batch: pa.RecordBatch) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class PredictorSource:
    """Where a predictor comes from: a model version's kind, config and verified files."""

    ref: str
    kind: ModelKind
    files: dict[str, str]
    config: dict[str, Any] = field(default_factory=dict)
    settings: SessionSettings = field(default_factory=SessionSettings)

    def build(self) -> Predictor:
        paths = {name: Path(p) for name, p in self.files.items()}
        if self.kind is ModelKind.RANK:
            return RankPredictor(self.config, paths, self.settings)
        if self.kind is ModelKind.GENERIC:
            graph = str(self.config.get("graph", "model.onnx"))
            if graph not in paths:
                raise UsageError(f"{self.ref}: no graph artifact {graph!r}; has {sorted(paths)}")
            return TensorPredictor(OnnxModel(paths[graph], self.settings))
        raise UsageError(f"{self.ref}: 'batch predict' scores rank or generic models, not "
                         f"{self.kind.value!r} models")


_ARROW_FOR = {"float32": pa.float64(), "float64": pa.float64(), "float16": pa.float64(),
              "int64": pa.int64(), "int32": pa.int64(), "int8": pa.int64(), "bool": pa.bool_()}


class TensorPredictor:
    """Columns named like the graph's inputs, one row each, straight into the ONNX graph."""

    def __init__(self, model: OnnxModel) -> None:
        self.model = model
        for spec in model.signature.inputs:
            if spec.dtype not in _ARROW_FOR or not 1 <= len(spec.shape) <= 2:
                raise UsageError(f"input {spec.name!r} ({spec.dtype}{list(spec.shape)}) cannot be "
                                 f"read from a table column; batch needs numeric 1-D or 2-D inputs")

    @property
    def needs(self) -> dict[str, pa.DataType]:
        return {s.name: _arrow_type(s) for s in self.model.signature.inputs}

    def predict(self, batch: pa.RecordBatch) -> dict[str, np.ndarray]:
        feed = {s.name: _tensor(s, batch.column(s.name)) for s in self.model.signature.inputs}
        return self.model.run(feed, check=False)


def _arrow_type(spec: TensorSpec) -> pa.DataType:
    scalar = _ARROW_FOR[spec.dtype]
    if len(spec.shape) == 2 and spec.shape[1] != 1:
        return pa.list_(scalar)
    return scalar


def _tensor(spec: TensorSpec, column: pa.Array) -> np.ndarray:
    if column.null_count:
        raise InputError(f"column {spec.name!r}: missing value")
    if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type):
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        width = spec.shape[1]
        ragged = len(lengths) and lengths.min() != lengths.max()
        if ragged or (len(lengths) and width != -1 and lengths[0] != width):
            raise InputError(f"column {spec.name!r}: expected lists of {width} values")
        flat = column.flatten().to_numpy(zero_copy_only=False)
        values = flat.reshape(len(column), -1)
    else:
        values = column.to_numpy(zero_copy_only=False)
        if len(spec.shape) == 2:
            values = values.reshape(-1, 1)
    return check_tensor(spec, values)


class RankPredictor:
    """A CTR ranking pipeline: feature columns in, one ``score`` per row out."""

    def __init__(self, config: Mapping[str, Any], files: Mapping[str, Path],
                 settings: SessionSettings) -> None:
        from shopserve.models.rank import RankPipeline

        self.pipeline = RankPipeline(config, files, settings)

    @property
    def needs(self) -> dict[str, pa.DataType]:
        features = self.pipeline.features
        types: dict[str, pa.DataType] = {f.name: pa.float64() for f in features.numeric}
        types.update({f.name: pa.string() for f in features.categorical})
        return types

    def predict(self, batch: pa.RecordBatch) -> dict[str, np.ndarray]:
        return {"score": self.pipeline.rank(batch)}
