"""Tiny real models for the serving tests: a linear ONNX scorer and a CTR click table."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from shopserve.testing import LINEAR_WEIGHTS, linear_onnx

__all__ = ["WEIGHTS", "click_table", "linear_onnx"]

WEIGHTS = np.array(LINEAR_WEIGHTS, dtype=np.float32)


def click_table(rows: int = 400, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    i1 = rng.normal(size=rows)
    c1 = rng.choice(["a", "b", "c"], size=rows)
    logit = 1.5 * i1 + (c1 == "a") * 1.0 - 0.5
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return pa.table({"label": label, "I1": i1, "I2": rng.normal(size=rows), "C1": c1})


def ctr_row(i: int = 0) -> dict[str, object]:
    return {"I1": 0.1 * (i % 7), "I2": -0.3, "C1": "abc"[i % 3]}
