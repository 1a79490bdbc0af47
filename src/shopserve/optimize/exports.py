"""Export of a torch model to ONNX, checked against torch on real inputs (needs ``[train]``).

The one place shopserve calls ``torch.onnx.export``: a failure names the model and the operator
the exporter could not handle, and the graph reaches its target only after parity passed.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shopserve.errors import IntegrityError, UsageError, require
from shopserve.optimize.graphs import max_abs_diff
from shopserve.runtime.onnx import OnnxModel

_OPERATOR = re.compile(r"operator '([\w:.]+)'")


@dataclass(frozen=True)
class TorchExportSpec:
    """How to export one model and how close ONNX must stay to torch (absolute tolerance)."""

    model_name: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic_axes: Mapping[str, Mapping[int, str]] = field(default_factory=dict)
    opset: int = 17
    tolerance: float = 1e-4


def torch_outputs(module: Any, batch: Mapping[str, np.ndarray],
                  spec: TorchExportSpec) -> list[np.ndarray]:
    """The module's outputs on ``batch`` (inputs in ``spec.input_names`` order), as float64."""
    import torch

    with torch.inference_mode():
        out = module(*(torch.from_numpy(np.ascontiguousarray(batch[n])) for n in spec.input_names))
    outs = out if isinstance(out, tuple | list) else (out,)
    return [np.asarray(o.detach().numpy(), dtype=np.float64) for o in outs]


def export_checked(module: Any, target: Path, spec: TorchExportSpec,
                   sample: Mapping[str, np.ndarray],
                   check: Sequence[Mapping[str, np.ndarray]]) -> float:
    """Export ``module`` (traced on ``sample``) to ``target`` and return the largest
    |ONNX − torch| over the ``check`` batches; ``IntegrityError`` beyond ``spec.tolerance``.

    ``UsageError`` naming the model and the operator when the exporter cannot handle it.
    Nothing is written to ``target`` unless the export succeeded and matched.
    """
    require("torch", "train")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".onnx", dir=target.parent)
    os.close(fd)
    staging = Path(name)
    try:
        _export(module, staging, spec, sample)
        session = OnnxModel(staging)
        worst = 0.0
        for batch in check:
            try:
                got = session.run(dict(batch), check=False)
            except Exception as exc:  # ORT's own errors: wrong shapes, axes not made dynamic
                raise UsageError(f"model {spec.model_name!r}: the exported graph cannot run the "
                                 f"check inputs (are their axes in dynamic_axes?): "
                                 f"{str(exc).strip().splitlines()[0]}") from exc
            onnx_out = [np.asarray(got[n], dtype=np.float64) for n in spec.output_names]
            worst = max(worst, max_abs_diff(torch_outputs(module, batch, spec), onnx_out))
        if not worst <= spec.tolerance:
            raise IntegrityError(f"model {spec.model_name!r}: ONNX export differs from torch by "
                                 f"{worst:.3g} on real inputs (tolerance {spec.tolerance:g})")
        os.replace(staging, target)
        return worst
    finally:
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()


def _export(module: Any, path: Path, spec: TorchExportSpec,
            sample: Mapping[str, np.ndarray]) -> None:
    import torch

    args = tuple(torch.from_numpy(np.ascontiguousarray(sample[n])) for n in spec.input_names)
    axes = {k: dict(v) for k, v in spec.dynamic_axes.items()}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes and the exporter's own deprecation
            torch.onnx.export(module, args, str(path), input_names=list(spec.input_names),
                              output_names=list(spec.output_names), dynamic_axes=axes,
                              opset_version=spec.opset, dynamo=False)
    except torch.onnx.errors.UnsupportedOperatorError as exc:
        found = _OPERATOR.search(str(exc))
        op = found.group(1) if found else "an operator"
        raise UsageError(f"model {spec.model_name!r} cannot be exported to ONNX: {op} is not "
                         f"supported by the exporter at opset {spec.opset}") from exc
    except Exception as exc:  # the exporter raises many kinds; name the model and the first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        found = _OPERATOR.search(str(exc))
        where = f" at {found.group(1)}" if found else ""
        raise UsageError(f"model {spec.model_name!r} cannot be exported to ONNX{where}: "
                         f"{first}") from exc
