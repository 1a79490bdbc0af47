"""Batch predict speed as ratios measured in one run: 1 and 2 workers against a tight ORT loop.

Goals (issue 5): one worker >= 0.90 of the tight loop; two workers >= 1.7x one worker.
Bounded: ``--rows`` (default 200k) keeps it to well under a minute on two cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "batch"))
import onnx
from onnx import TensorProto, helper

from shopserve.batch import PredictJobSpec, run_predict
from shopserve.runtime.onnx import OnnxModel


def make_mlp(path: Path, hidden: int) -> Path:
    """x1, x2 [N, 1] -> two ReLU layers of ``hidden`` units -> sigmoid score: real work per row."""
    rng = np.random.default_rng(1)
    shapes = {"w1": (2, hidden), "w2": (hidden, hidden), "w3": (hidden, 1)}
    inits = [
        helper.make_tensor(
            n, TensorProto.FLOAT, s, (rng.normal(size=s) / np.sqrt(s[0])).astype(np.float32).ravel()
        )
        for n, s in shapes.items()
    ]
    nodes = [
        helper.make_node("Concat", ["x1", "x2"], ["x"], axis=1),
        helper.make_node("MatMul", ["x", "w1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["a1"]),
        helper.make_node("MatMul", ["a1", "w2"], ["h2"]),
        helper.make_node("Relu", ["h2"], ["a2"]),
        helper.make_node("MatMul", ["a2", "w3"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["score"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 1]) for n in ("x1", "x2")],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def tight_loop(model: Path, table: pa.Table, batch_size: int) -> float:
    session = OnnxModel(model)
    x1 = table["x1"].to_numpy().astype(np.float32).reshape(-1, 1)
    x2 = table["x2"].to_numpy().astype(np.float32).reshape(-1, 1)
    started = time.perf_counter()
    for i in range(0, len(x1), batch_size):
        session.run({"x1": x1[i : i + batch_size], "x2": x2[i : i + batch_size]}, check=False)
    return len(x1) / (time.perf_counter() - started)


def job(model: Path, src: Path, out: Path, workers: int, batch_size: int) -> float:
    spec = PredictJobSpec(
        model=str(model),
        input=src,
        output=out,
        workers=workers,
        batch_size=batch_size,
        overwrite=True,
    )
    with open("/dev/null", "w") as quiet:
        summary = run_predict(spec, stream=quiet)
    return summary.rows / summary.seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--hidden", type=int, default=512)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    table = pa.table({"x1": rng.normal(size=args.rows), "x2": rng.normal(size=args.rows)})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = make_mlp(root / "model.onnx", args.hidden)
        src = root / "in.parquet"
        pq.write_table(table, src)
        loop = tight_loop(model, table, args.batch_size)
        one = job(model, src, root / "one.parquet", 1, args.batch_size)
        two = job(model, src, root / "two.parquet", 2, args.batch_size)
    print(
        json.dumps(
            {
                "rows": args.rows,
                "batch_size": args.batch_size,
                "hidden": args.hidden,
                "tight_loop_rows_per_s": round(loop),
                "one_worker_rows_per_s": round(one),
                "two_workers_rows_per_s": round(two),
                "one_worker_vs_loop": round(one / loop, 3),
                "two_vs_one_worker": round(two / one, 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
