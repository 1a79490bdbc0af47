"""A tiny logistic ONNX model and labelled inputs, made in the test, for batch jobs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import psutil
import pyarrow as pa
from onnx import TensorProto, helper

SHOPSERVE = str(Path(sys.executable).with_name("shopserve"))
WEIGHTS = np.array([[0.8], [-0.5]], dtype=np.float32)


def make_model(path: Path) -> Path:
    """score = sigmoid(x1 * 0.8 + x2 * -0.5 + 0.1) with inputs x1, x2 of shape [N, 1]."""
    nodes = [
        helper.make_node("Concat", ["x1", "x2"], ["x"], axis=1),
        helper.make_node("MatMul", ["x", "w"], ["z0"]),
        helper.make_node("Add", ["z0", "b"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["score"]),
    ]
    graph = helper.make_graph(
        nodes, "logit",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 1]) for n in ("x1", "x2")],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor("w", TensorProto.FLOAT, [2, 1], WEIGHTS.ravel().tolist()),
         helper.make_tensor("b", TensorProto.FLOAT, [1], [0.1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def make_rows(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    p = 1 / (1 + np.exp(-(0.8 * x1 - 0.5 * x2 + 0.1)))
    return pa.table({"id": [f"r{i}" for i in range(n)], "x1": x1, "x2": x2,
                     "label": (rng.random(n) < p).astype(np.int64)})


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SHOPSERVE, *args], capture_output=True, text=True, timeout=timeout)


def peak_rss(command: list[str], limit_s: float) -> tuple[int, int, str]:
    """Peak resident bytes of ``command`` and all its children (sampled every 20 ms), its exit
    code and its stderr. Killed, with a ``TimeoutError``, when it runs past ``limit_s``."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
        top = psutil.Process(proc.pid)
        deadline = time.monotonic() + limit_s
        peak = 0
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{command[:3]} ran past {limit_s}s")
                with contextlib.suppress(psutil.Error):  # a process ended while being read
                    peak = max(peak, sum(p.memory_info().rss
                                         for p in [top, *top.children(recursive=True)]))
                time.sleep(0.02)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        err.seek(0)
        return peak, proc.returncode, err.read().decode(errors="replace")
