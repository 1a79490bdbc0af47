"""Checked export from torch: parity recorded as export_max_abs_diff, and a model the exporter
cannot handle refused with its name and the operator, leaving nothing behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shopserve.data import DemoShopSpec, generate_demo_shop
from shopserve.errors import IntegrityError, UsageError
from shopserve.models import CtrTrainer, CtrTrainSpec, train_and_register
from shopserve.optimize.exports import TorchExportSpec, export_checked
from shopserve.registry import Registry
from shopserve.runtime.onnx import OnnxModel
from shopserve.types import ModelKind

torch = pytest.importorskip("torch", reason="needs the [train] extra (torch)")

pytestmark = pytest.mark.train

SPEC = TorchExportSpec(model_name="toy", input_names=("x",), output_names=("y",),
                       dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})


class Toy(torch.nn.Module):  # type: ignore[misc]
    def __init__(self, running_max: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.dense = torch.nn.Linear(6, 6)
        self.running_max = running_max

    def forward(self, x: Any) -> Any:
        h = torch.tanh(self.dense(x))
        return torch.cummax(h, dim=1).values if self.running_max else h


def rows(n: int) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(n).normal(size=(n, 6)).astype(np.float32)}


def test_export_matches_torch_on_other_batch_sizes(tmp_path: Path) -> None:
    target = tmp_path / "toy.onnx"
    diff = export_checked(Toy(False).eval(), target, SPEC, rows(2), [rows(5), rows(64)])
    assert 0 <= diff <= SPEC.tolerance
    assert OnnxModel(target).run(rows(7))["y"].shape == (7, 6)
    assert [p.name for p in tmp_path.iterdir()] == ["toy.onnx"]


def test_unsupported_operator_names_model_and_op_and_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out" / "toy.onnx"
    with pytest.raises(UsageError, match=r"model 'toy' cannot be exported to ONNX: "
                       r"aten::cummax is not supported by the exporter at opset 17"):
        export_checked(Toy(True).eval(), target, SPEC, rows(2), [rows(5)])
    assert list(target.parent.iterdir()) == []


class SignFlip(torch.nn.Module):  # type: ignore[misc]
    """Data-dependent control flow: tracing keeps only the branch the sample took."""

    def forward(self, x: Any) -> Any:
        return x if bool(x.sum() > 0) else -x


def test_export_that_computes_something_else_is_refused(tmp_path: Path) -> None:
    positive = {"x": np.ones((2, 6), np.float32)}
    with pytest.raises(IntegrityError, match=r"model 'toy': ONNX export differs from torch by "
                       r"2 on real inputs \(tolerance 0.0001\)"):
        export_checked(SignFlip(), tmp_path / "toy.onnx", SPEC, positive, [{"x": -positive["x"]}])
    assert list(tmp_path.iterdir()) == []
    fixed = TorchExportSpec(model_name="toy", input_names=("x",), output_names=("y",))
    with pytest.raises(UsageError, match=r"model 'toy': the exported graph cannot run the check"):
        export_checked(Toy(False).eval(), tmp_path / "toy.onnx", fixed, rows(2), [rows(5)])


@pytest.mark.slow
def test_torch_deepfm_records_export_difference(tmp_path: Path) -> None:
    shop = generate_demo_shop(DemoShopSpec(seed=0, products=100, customers=20, queries=10,
                                           ctr_rows=600))
    reg = Registry.open(tmp_path / "home")
    spec = CtrTrainSpec(trainer=CtrTrainer.TORCH)
    version = train_and_register(ModelKind.RANK, shop, reg, "ctr", spec)
    assert 0 <= version.metrics["export_max_abs_diff"] <= 1e-5
