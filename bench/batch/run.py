"""Batch predict speed and memory, measured in one run on this machine.

``speed``: rows/s of 1 and 2 workers against a tight ONNX Runtime loop over in-memory batches,
with start-up (model load, worker spawn) timed apart from the steady state, and CPU-seconds per
row with and without start-up (the job's process tree, sampled while it runs). Goals (issue 5): one
worker >= 0.90x the loop; two workers >= 1.7x one worker. ``memory``: peak RSS of a real
``shopserve batch predict`` process tree streaming a generated input (goal: well under 2 GB
for 10 million rows). Both print JSON, with the machine's load average, so that numbers from a
shared machine can be read for what they are.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
from onnx import TensorProto, helper

from shopserve.batch import BatchSummary, PredictJobSpec, run_predict
from shopserve.runtime.onnx import OnnxModel

SHOPSERVE = str(Path(sys.executable).with_name("shopserve"))


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


def write_input(path: Path, rows: int, group: int = 1 << 20) -> None:
    """``rows`` rows of id, x1, x2 written a row group at a time (never all in memory)."""
    schema = pa.schema([("id", pa.int64()), ("x1", pa.float64()), ("x2", pa.float64())])
    rng = np.random.default_rng(0)
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, group):
            n = min(group, rows - start)
            writer.write_table(pa.table({"id": np.arange(start, start + n),
                                         "x1": rng.normal(size=n), "x2": rng.normal(size=n)},
                                        schema=schema))


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (worker processes)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def tight_loop(model: Path, src: Path, batch_size: int) -> dict[str, float]:
    """The same session settings, called back to back on float32 arrays already in memory."""
    started = time.perf_counter()
    session = OnnxModel(model)
    loaded = time.perf_counter()
    table = pq.read_table(src, columns=["x1", "x2"])
    x1 = table["x1"].to_numpy().astype(np.float32).reshape(-1, 1)
    x2 = table["x2"].to_numpy().astype(np.float32).reshape(-1, 1)
    cpu, begin = cpu_seconds(), time.perf_counter()
    for i in range(0, len(x1), batch_size):
        session.run({"x1": x1[i : i + batch_size], "x2": x2[i : i + batch_size]}, check=False)
    seconds, cpu = time.perf_counter() - begin, cpu_seconds() - cpu
    return {"steady_rows_per_s": len(x1) / seconds, "startup_s": loaded - started,
            "seconds": seconds, "rows_per_cpu_s": len(x1) / cpu}


class TreeCpuSampler:
    """CPU seconds of this process and its live children, sampled with the number of finished
    parts in a job's work folder: the steady state's CPU, without worker start-up."""

    def __init__(self, work: Path, every_s: float = 0.05) -> None:
        self.work, self.every_s = work, every_s
        self.samples: list[tuple[int, float]] = []  # (parts, tree CPU seconds)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self.stop.wait(self.every_s):
            try:
                parts = len(list(self.work.glob("part-*.parquet"))) if self.work.exists() else 0
                tree = [me, *me.children(recursive=True)]
                self.samples.append((parts, sum(sum(p.cpu_times()[:2]) for p in tree)))
            except (psutil.Error, OSError):
                continue  # a worker ended, or the work folder went, while being read

    def steady_rows_per_cpu_s(self, chunks: int, batch_size: int) -> float:
        """Rows per CPU-second from the first finished part to the last sample before the end."""
        seen = [s for s in self.samples if 1 <= s[0] < chunks]
        if len(seen) < 2 or seen[-1][0] == seen[0][0]:
            return float("nan")
        return (seen[-1][0] - seen[0][0]) * batch_size / (seen[-1][1] - seen[0][1])


def job(model: Path, src: Path, out: Path, workers: int, batch_size: int) -> dict[str, float]:
    spec = PredictJobSpec(model=str(model), input=src, output=out, workers=workers,
                          batch_size=batch_size, id_column="id", overwrite=True)
    sampler = TreeCpuSampler(out.with_name(f".{out.name}.batch-work"))
    cpu = cpu_seconds()
    sampler.thread.start()
    with open(os.devnull, "w") as quiet:
        summary: BatchSummary = run_predict(spec, stream=quiet)
    sampler.stop.set()
    sampler.thread.join()
    cpu = cpu_seconds() - cpu
    return {"rows_per_s": summary.rows / summary.seconds,
            "steady_rows_per_s": summary.scored_rows / summary.scoring_seconds,
            "startup_s": summary.startup_seconds, "scoring_s": summary.scoring_seconds,
            "publish_s": summary.publish_seconds, "seconds": summary.seconds,
            "rows_per_cpu_s": summary.rows / cpu,
            "steady_rows_per_cpu_s": sampler.steady_rows_per_cpu_s(summary.chunks, batch_size)}


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)}


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(r[key] for r in runs), 3) for key in runs[0]}


def speed(args: argparse.Namespace) -> dict[str, Any]:
    """Rounds interleave the three variants, so load that comes and goes hits all of them."""
    runs: dict[str, list[dict[str, float]]] = {"tight_loop": [], "one_worker": [],
                                               "two_workers": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = make_mlp(root / "model.onnx", args.hidden)
        src = root / "in.parquet"
        write_input(src, args.rows)
        before = machine()
        for _ in range(args.rounds):
            runs["tight_loop"].append(tight_loop(model, src, args.batch_size))
            runs["one_worker"].append(job(model, src, root / "one.parquet", 1, args.batch_size))
            runs["two_workers"].append(job(model, src, root / "two.parquet", 2,
                                           args.batch_size))
    loop, one, two = (_median(runs[k]) for k in ("tight_loop", "one_worker", "two_workers"))
    return {
        "rows": args.rows, "batch_size": args.batch_size, "hidden": args.hidden,
        "rounds": args.rounds, "machine_before": before, "machine_after": machine(),
        "median_of_rounds": {"tight_loop": loop, "one_worker": one, "two_workers": two},
        "steady": {"one_worker_vs_loop": round(one["steady_rows_per_s"]
                                               / loop["steady_rows_per_s"], 3),
                   "two_vs_one_worker": round(two["steady_rows_per_s"]
                                              / one["steady_rows_per_s"], 3)},
        "with_startup": {"one_worker_vs_loop": round(one["rows_per_s"]
                                                     / loop["steady_rows_per_s"], 3),
                         "two_vs_one_worker": round(two["rows_per_s"] / one["rows_per_s"], 3)},
        "per_cpu_second": {"one_worker_vs_loop": round(one["rows_per_cpu_s"]
                                                       / loop["rows_per_cpu_s"], 3),
                           "two_vs_one_worker": round(two["rows_per_cpu_s"]
                                                      / one["rows_per_cpu_s"], 3)},
        "per_cpu_second_steady": {
            "one_worker_vs_loop": round(one["steady_rows_per_cpu_s"]
                                        / loop["rows_per_cpu_s"], 3),
            "two_vs_one_worker": round(two["steady_rows_per_cpu_s"]
                                       / one["steady_rows_per_cpu_s"], 3)},
    }


def peak_rss(command: list[str], limit_s: float) -> tuple[int, float, int]:
    """Peak resident memory (bytes) of ``command`` and its children, its seconds and exit code."""
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    top = psutil.Process(proc.pid)
    peak = 0
    try:
        while proc.poll() is None:
            if time.monotonic() - started > limit_s:
                raise TimeoutError(f"{command[:3]} ran past {limit_s}s")
            try:
                tree = [top, *top.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass  # a child ended between the listing and the read
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return peak, time.monotonic() - started, proc.returncode


def memory(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        root = Path(tmp)
        model = make_mlp(root / "model.onnx", args.hidden)
        src = root / "in.parquet"
        write_input(src, args.rows)
        command = [SHOPSERVE, "batch", "predict", "--model", str(model), "--input", str(src),
                   "--output", str(root / "out.parquet"), "--id-column", "id",
                   "--workers", str(args.workers), "--batch-size", str(args.batch_size)]
        before = machine()
        peak, seconds, code = peak_rss(command, args.limit_s)
        written = pq.ParquetFile(root / "out.parquet").metadata.num_rows if code == 0 else 0
    return {"rows": args.rows, "workers": args.workers, "batch_size": args.batch_size,
            "hidden": args.hidden, "exit_code": code, "rows_written": written,
            "peak_rss_mb": round(peak / 2**20, 1), "seconds": round(seconds, 1),
            "machine_before": before, "machine_after": machine()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", nargs="?", choices=("speed", "memory"), default="speed")
    parser.add_argument("--rows", type=int, default=None,
                        help="default 400k (speed) or 10M (memory)")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--hidden", type=int, default=None, help="default 512 (speed), 16 (memory)")
    parser.add_argument("--workers", type=int, default=1, help="memory mode only")
    parser.add_argument("--rounds", type=int, default=3, help="speed mode only")
    parser.add_argument("--limit-s", type=float, default=900.0, help="memory mode only")
    parser.add_argument("--tmp", type=Path, default=None, help="where the inputs are written")
    args = parser.parse_args()
    if args.mode == "speed":
        args.rows = args.rows or 400_000
        args.hidden = args.hidden or 512
        result = speed(args)
    else:
        args.rows = args.rows or 10_000_000
        args.hidden = args.hidden or 16
        result = memory(args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
