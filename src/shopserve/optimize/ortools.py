"""The one adapter to ONNX Runtime's graph tooling: offline optimization, transformer fusions,
int8 quantization and fp16 conversion. Inference itself goes through ``shopserve.runtime``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from shopserve.errors import DependencyError, UsageError

# Quantizing a graph ORT already optimized fails on a data-type lookup unless told the default.
_QUANT_EXTRA = {"DefaultTensorType": onnx.TensorProto.FLOAT}


@dataclass(frozen=True)
class QuantSpec:
    """What to quantize and how; ``static`` needs ``calibration`` batches of real inputs."""

    static: bool = False
    per_channel: bool = False
    nodes_to_quantize: Sequence[str] | None = None
    nodes_to_exclude: Sequence[str] = ()
    calibration: Sequence[dict[str, np.ndarray]] = field(default_factory=tuple)


@contextmanager
def _quiet() -> Iterator[None]:
    """ORT's quantizer logs advice through the root logger; keep users' logging as it was."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    if not handlers:
        root.addHandler(logging.NullHandler())  # stops logging.warning() calling basicConfig
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers


class _Reader:
    """ORT's calibration reader protocol over a list of input batches."""

    def __init__(self, batches: Sequence[dict[str, np.ndarray]]) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantize(source: Path, target: Path, spec: QuantSpec) -> Path:
    """Write an int8 version of ``source`` to ``target`` (QDQ when static, dynamic otherwise)."""
    from onnxruntime import quantization as q

    nodes = list(spec.nodes_to_quantize) if spec.nodes_to_quantize is not None else None
    common = {
        "per_channel": spec.per_channel,
        "weight_type": q.QuantType.QInt8,
        "nodes_to_quantize": nodes,
        "nodes_to_exclude": list(spec.nodes_to_exclude),
        "extra_options": dict(_QUANT_EXTRA),
    }
    try:
        with _quiet():
            _run_quantizer(q, source, target, spec, common)
    except UsageError:
        raise
    except Exception as exc:  # ORT's quantizer raises bare errors on graphs it cannot handle
        raise UsageError(
            f"{source.name}: ONNX Runtime could not quantize this graph: {exc}"
        ) from exc
    return target


def _run_quantizer(q: Any, source: Path, target: Path, spec: QuantSpec,
                   common: dict[str, Any]) -> None:
    # Shape inference first: graphs saved by ORT's optimizer lack the types the quantizer needs.
    # ONNX's own inference only: ORT's symbolic one leaves temp files in the working directory
    # when it gives up on a graph.
    prepared = target.with_suffix(".prep.onnx")
    q.quant_pre_process(str(source), str(prepared), skip_optimization=True,
                        skip_symbolic_shape=True)
    try:
        if not spec.static:
            q.quantize_dynamic(prepared, target, **common)
            return
        if not spec.calibration:
            raise UsageError("static int8 quantization needs calibration inputs, got none")
        q.quantize_static(prepared, target, _Reader(spec.calibration),
                          quant_format=q.QuantFormat.QDQ, activation_type=q.QuantType.QUInt8,
                          calibrate_method=q.CalibrationMethod.MinMax, **common)
    finally:
        prepared.unlink(missing_ok=True)


@dataclass(frozen=True)
class WeightOnlySpec:
    """Block-wise weight-only quantization of MatMul weights (ORT's ``MatMulNBits``)."""

    bits: int = 8
    block_size: int = 128
    symmetric: bool = True
    accuracy_level: int = 4  # 4: activations quantized to int8 per block at run time


def quantize_weight_only(source: Path, target: Path, spec: WeightOnlySpec) -> Path:
    """Write ``source`` with its constant MatMul weights as ``MatMulNBits`` to ``target``."""
    try:  # ORT's n-bit quantizer imports onnx-ir (a shopserve dependency) at module level
        from onnxruntime.quantization import matmul_nbits_quantizer as nbits
    except ImportError as exc:
        raise DependencyError(f"weight-only quantization cannot load ONNX Runtime's quantizer "
                              f"({exc}); reinstall shopserve, which depends on onnx-ir") from exc

    try:
        with _quiet():
            quantizer = nbits.MatMulNBitsQuantizer(
                onnx.load(str(source)), bits=spec.bits, block_size=spec.block_size,
                is_symmetric=spec.symmetric, accuracy_level=spec.accuracy_level)
            quantizer.process()
            quantizer.model.save_model_to_file(str(target), False)
    except Exception as exc:  # the quantizer raises bare errors on graphs it cannot handle
        raise UsageError(
            f"{source.name}: ONNX Runtime could not quantize this graph's weights: {exc}"
        ) from exc
    return target


def optimize_offline(source: Path, target: Path, extended: bool = True) -> Path:
    """Run ORT's graph optimizations once and save the result (portable levels only)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        if extended
        else ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    )
    opts.optimized_model_filepath = str(target)
    opts.intra_op_num_threads = 1
    try:
        ort.InferenceSession(str(source), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise UsageError(
            f"{source.name}: ONNX Runtime could not optimize this graph: {exc}"
        ) from exc
    return target


def fuse_transformer(source: Path, target: Path) -> Path:
    """Apply ORT's bert fusions (attention, layer norm, gelu) and save the result."""
    from onnxruntime.transformers import optimizer

    # The fusion tool logs every pattern it tries; users only need the result.
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    try:
        fused = optimizer.optimize_model(str(source), model_type="bert", opt_level=0)
        fused.save_model_to_file(str(target))
    except Exception as exc:
        raise UsageError(f"{source.name}: transformer fusion failed: {exc}") from exc
    return target


def to_float16(source: Path, target: Path) -> Path:
    """Convert weights and compute to fp16, keeping fp32 inputs and outputs."""
    from onnxruntime.transformers import float16

    model = onnx.load(str(source))
    try:
        converted = float16.convert_float_to_float16(model, keep_io_types=True)
    except Exception as exc:
        raise UsageError(f"{source.name}: fp16 conversion failed: {exc}") from exc
    onnx.save(converted, str(target))
    return target
