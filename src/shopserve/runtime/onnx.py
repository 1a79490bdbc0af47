"""The one adapter to ONNX Runtime: sessions, providers, and input checks against a signature.

Nothing else in shopserve imports ``onnxruntime``; serving, batch, optimize and the reference
models all run ONNX graphs through ``OnnxModel``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shopserve.errors import InputError, IntegrityError, UsageError
from shopserve.types import ModelSignature, TensorSpec


class Device(enum.StrEnum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


@dataclass(frozen=True)
class SessionSettings:
    """How one session runs: device and threads (0 lets ONNX Runtime choose)."""

    device: Device = Device.CPU
    intra_op_threads: int = 1
    inter_op_threads: int = 1


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def providers_for(device: Device) -> list[str]:
    have = available_providers()
    if device is Device.CUDA:
        if "CUDAExecutionProvider" not in have:
            raise UsageError("device 'cuda' asked for, but ONNX Runtime has no CUDA provider here")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device is Device.AUTO and "CUDAExecutionProvider" in have:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _spec_from_ort(arg: Any) -> TensorSpec:  # onnxruntime.NodeArg, untyped upstream
    type_name = str(arg.type)  # e.g. "tensor(float)"
    inner = type_name.removeprefix("tensor(").removesuffix(")")
    dtype = {"float": "float32", "double": "float64", "float16": "float16"}.get(inner, inner)
    shape = tuple(d if isinstance(d, int) else -1 for d in arg.shape)
    return TensorSpec(name=str(arg.name), dtype=dtype, shape=shape)


class OnnxModel:
    """An ONNX Runtime session with the model's signature and checked inputs."""

    def __init__(self, model: bytes | Path, settings: SessionSettings | None = None) -> None:
        import onnxruntime as ort

        self.settings = settings or SessionSettings()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.settings.intra_op_threads
        opts.inter_op_num_threads = self.settings.inter_op_threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(
                source, sess_options=opts, providers=providers_for(self.settings.device)
            )
        except Exception as exc:  # ORT raises its own untyped errors on bad graphs
            where = "model bytes" if isinstance(model, bytes) else str(model)
            raise IntegrityError(f"{where}: ONNX Runtime cannot load this model: {exc}") from exc
        self.signature = ModelSignature(
            inputs=tuple(_spec_from_ort(a) for a in self.session.get_inputs()),
            outputs=tuple(_spec_from_ort(a) for a in self.session.get_outputs()),
        )
        self.output_names = [o.name for o in self.signature.outputs]

    def check_inputs(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Cast to the expected dtypes and refuse wrong names, ranks, sizes or NaN."""
        unknown = set(inputs) - {s.name for s in self.signature.inputs}
        if unknown:
            raise InputError(f"unknown input(s) {sorted(unknown)}; model takes "
                             f"{[s.name for s in self.signature.inputs]}")
        checked: dict[str, np.ndarray] = {}
        for spec in self.signature.inputs:
            if spec.name not in inputs:
                raise InputError(f"missing input {spec.name!r} ({spec.dtype}{list(spec.shape)})")
            checked[spec.name] = check_tensor(spec, inputs[spec.name])
        return checked

    def run(self, inputs: Mapping[str, np.ndarray], check: bool = True) -> dict[str, np.ndarray]:
        feed = self.check_inputs(inputs) if check else dict(inputs)
        outputs = self.session.run(self.output_names, feed)
        return dict(zip(self.output_names, outputs, strict=True))


def check_tensor(spec: TensorSpec, value: np.ndarray) -> np.ndarray:
    """``value`` as ``spec.dtype`` with a matching shape, or an ``InputError`` naming why."""
    arr = np.asarray(value)
    if arr.ndim != len(spec.shape):
        raise InputError(
            f"input {spec.name!r}: expected {len(spec.shape)} dimensions {list(spec.shape)}, "
            f"got shape {list(arr.shape)}"
        )
    for axis, (want, got) in enumerate(zip(spec.shape, arr.shape, strict=True)):
        if want != -1 and want != got:
            raise InputError(
                f"input {spec.name!r}: axis {axis} must be {want}, got {got} "
                f"(shape {list(arr.shape)})"
            )
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # 1e300 -> inf: refused just below
            cast = arr.astype(spec.dtype, copy=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"input {spec.name!r}: cannot read as {spec.dtype}: {exc}") from exc
    if cast.dtype.kind == "f" and not np.isfinite(cast).all():
        raise InputError(f"input {spec.name!r}: contains NaN or infinity")
    if arr.dtype.kind == "f" and cast.dtype.kind in "iu" and not np.array_equal(arr, cast):
        raise InputError(f"input {spec.name!r}: expected whole numbers ({spec.dtype})")
    return cast
