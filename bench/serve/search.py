"""Search endpoint speed: ``POST /v1/search`` served by shopserve vs the same encoder offline.

Goal (serving issue): with the optimized encoder, at concurrency 32, the served search endpoint
answers ≥ 80 % of the encoder's best offline queries/s (same ONNX file, same processes and
intra-op threads, called directly in a loop), ≥ 1.5× a per-request (no batching) server, with
p99 ≤ 50 ms. Everything is measured in the same run, in alternating rounds.

1. A search model (all-MiniLM-L6-v2 + HNSW + BM25 + re-ranker) trained on ``../shared/data``
   (homedepot, a ``--queries`` sample; cached like ``bench/optimize/search_encoder.py``) or, when
   that is absent, on the demo shop; registered in a temporary registry, then
   ``shopserve.optimize`` makes its ``int8-weight-only`` child (the recipe docs/optimize.md
   recommends for the search encoder), gated, promoted to ``production``.
2. Offline: as many processes as the deployment has replicas, each with the replica's intra-op
   threads and the same ONNX file, looping over the same distinct queries at each batch size:
   the encoder (tokenizer + graph, ``TextEncoder.encode``) and the whole pipeline
   (``SearchPipeline.search``: encode, HNSW, BM25, features, re-ranker — what the endpoint runs).
3. Served: ``shopserve serve`` (supervisor + replicas), cache off, ``POST /v1/search`` with
   thousands of distinct real queries (k 10), wrk with 1 thread and 32 connections.
4. Per-request: the same deployment with ``max_batch_size: 1``.

wrk shares the machine with the servers (and with whatever else runs on it: the load average is
printed). Results: ``bench/results/search-serve.{md,json}``.

    python bench/serve/search.py [--layouts 2x1,1x2] [--rounds 3] [--seconds 5] [--model DIR]
    python bench/serve/search.py --tiny --rounds 1 --seconds 1      # seconds, no torch (tests)
    python bench/serve/search.py --stages      # only: CPU per query of the pipeline's parts
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil

from shopserve.testing import cpu_seconds

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = ROOT / "bench" / "results"
DATA = ROOT.parent / "shared" / "data"

RECIPE = "int8-weight-only"
GOAL = {"vs_offline": 0.8, "vs_per_request": 1.5, "p99_ms": 50.0}
K = 10


@dataclass(frozen=True)
class Layout:
    replicas: int
    threads: int

    @classmethod
    def parse(cls, text: str) -> Layout:
        replicas, threads = (int(x) for x in text.lower().split("x"))
        return cls(replicas, threads)

    def __str__(self) -> str:
        return f"{self.replicas}x{self.threads}"


# ---------------------------------------------------------------------------- the model


def tiny_model(work: Path) -> tuple[Path, list[str]]:
    """A small real search model with a MatMul in its encoder (so int8-weight-only applies)."""
    import numpy as np

    from shopserve.data import DemoShopSpec, generate_demo_shop
    from shopserve.models.search import SearchTrainSpec, train_search
    from shopserve.models.search.encoder import ExportedEncoder
    from shopserve.testing import bag_of_words_encoder, word_tokenizer

    shop = generate_demo_shop(DemoShopSpec(seed=3, products=400, queries=150))
    titles = [str(t) for t in shop.catalog.column("title").to_pylist()]
    vocab = word_tokenizer(work / "tokenizer.json", titles)
    dim = 128
    project = np.eye(dim) + 0.05 * np.random.default_rng(1).normal(size=(dim, dim))
    bag_of_words_encoder(work / "encoder.onnx", vocab, dim, project)
    encoder = ExportedEncoder(work / "encoder.onnx", work / "tokenizer.json")
    train_search(shop, work / "model", SearchTrainSpec(epochs=30), encoder=encoder)
    return work / "model", _queries(shop.judgments)


def real_model(model: Path | None, max_queries: int) -> tuple[Path, list[str]]:
    """The trained MiniLM search model (cached) and the distinct queries of its shop."""
    from shopserve.data import DemoShopSpec, generate_demo_shop, load_shop

    if (DATA / "homedepot" / "train.csv").is_file():
        sys.path.insert(0, str(ROOT / "bench" / "optimize"))
        from search_encoder import trained_model  # the same cached model as that bench

        shop = load_shop(DATA)
        return trained_model(model, max_queries), _queries(shop.judgments)
    shop = generate_demo_shop(DemoShopSpec())
    if model is None:
        from shopserve.models.search import train_search
        from shopserve.models.search.export import cache_key
        from shopserve.models.search.train import FILES, default_cache_dir

        model = default_cache_dir().parent / "bench-search" / f"{cache_key()}-demo"
        if not all((model / name).is_file() for name in FILES):
            shutil.rmtree(model, ignore_errors=True)
            print(f"no {DATA}: training the search model on the demo shop into {model}")
            train_search(shop, model)
    return model, _queries(shop.judgments)


def _queries(judgments: Any) -> list[str]:
    queries = [q for q in dict.fromkeys(judgments.column("query").to_pylist())
               if isinstance(q, str) and q.strip() and len(q) <= 200]
    random.Random(0).shuffle(queries)
    return queries


def build_registry(model: Path, home: Path) -> dict[str, Any]:
    """Register the model, let ``shopserve.optimize`` make its int8-weight-only child and promote
    it; returns the child's gate numbers."""
    from shopserve.models.search.features import FEATURE_NAMES
    from shopserve.models.search.train import FILES
    from shopserve.optimize import (
        OptimizeSettings,
        QualityBudget,
        SpeedSettings,
        optimize,
        require_accepted,
    )
    from shopserve.registry import Registry
    from shopserve.types import ModelKind

    registry = Registry.open(home)
    config = {"graph": "encoder.onnx", "search": {}, "features": list(FEATURE_NAMES)}
    registry.register("search", {name: model / name for name in FILES}, ModelKind.SEARCH,
                      config=config)
    report = optimize(registry, "search@1", [RECIPE], QualityBudget(),
                      OptimizeSettings(promote="production",
                                       speed=SpeedSettings(batch_sizes=(1,), min_runs=1,
                                                           seconds_per_batch=0.1)))
    require_accepted(report)
    child = report.variants[1]
    return {"ref": child.ref, "recipe": RECIPE, "topk_agreement": child.topk_agreement,
            "deltas": child.deltas, "size_bytes": child.size_bytes}


# ---------------------------------------------------------------------------- offline


def _offline_worker(home: str, threads: int, queries: list[str], offset: int,
                    barrier: Any, conn: Connection) -> None:
    """One offline process: the production version's pipeline, then timed loops on command."""
    from shopserve.models.search import SearchPipeline
    from shopserve.registry import Registry
    from shopserve.runtime.onnx import SessionSettings

    loaded = Registry.open(Path(home)).load("search@production")
    pipe = SearchPipeline(loaded.meta.config, loaded.files,
                          SessionSettings(intra_op_threads=threads))
    pipe.search(queries[:8], K)  # warm
    conn.send("ready")
    pos = offset
    while True:
        task = conn.recv()
        if task is None:
            return
        mode, batch, seconds = task
        barrier.wait()
        done = 0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        while time.perf_counter() - wall0 < seconds:
            chunk = [queries[(pos + i) % len(queries)] for i in range(batch)]
            pos += batch
            if mode == "encoder":
                pipe.encoder.encode(chunk, batch_size=batch)
            else:
                pipe.search(chunk, K)
            done += batch
        conn.send((done, time.perf_counter() - wall0, time.process_time() - cpu0))


class Offline:
    """``layout.replicas`` processes with ``layout.threads`` intra-op threads each."""

    def __init__(self, home: Path, layout: Layout, queries: list[str]) -> None:
        ctx = mp.get_context("spawn")
        self.barrier = ctx.Barrier(layout.replicas)
        self.conns: list[Connection] = []
        self.procs = []
        for i in range(layout.replicas):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=_offline_worker, daemon=True,
                               args=(str(home), layout.threads, queries,
                                     i * len(queries) // layout.replicas, self.barrier, theirs))
            proc.start()
            self.conns.append(ours)
            self.procs.append(proc)
        for conn in self.conns:
            if not conn.poll(300) or conn.recv() != "ready":
                raise RuntimeError("an offline worker did not start")

    def measure(self, mode: str, batch: int, seconds: float) -> tuple[float, float]:
        """Summed queries/s of every process and CPU µs per query."""
        for conn in self.conns:
            conn.send((mode, batch, seconds))
        results = [conn.recv() for conn in self.conns]
        done = sum(r[0] for r in results)
        wall = max(r[1] for r in results)
        return done / wall, 1e6 * sum(r[2] for r in results) / max(done, 1)

    def close(self) -> None:
        for conn in self.conns:
            conn.send(None)
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()


def stages(model: Path, queries: list[str], sizes: list[int], repeats: int = 5) -> None:
    """CPU per query, one thread, of the search pipeline's parts at each batch size: the
    encoder, and everything after it (``SearchPipeline.search`` with the embeddings computed
    beforehand), of which the HNSW query. Least of ``repeats`` passes over 512 queries."""
    import numpy as np

    from shopserve.models.search import SearchPipeline
    from shopserve.models.search.features import FEATURE_NAMES
    from shopserve.models.search.train import FILES
    from shopserve.runtime.onnx import SessionSettings

    config = {"graph": "encoder.onnx", "search": {}, "features": list(FEATURE_NAMES)}
    pipe = SearchPipeline(config, {name: model / name for name in FILES},
                          SessionSettings(intra_op_threads=1))
    sample = queries[:512]
    known = dict(zip(sample, pipe.encode(sample), strict=True))

    def cpu_us(call: Any, batch: int) -> float:
        best = float("inf")
        for _ in range(repeats):
            t0 = time.process_time()
            for i in range(0, len(sample), batch):
                call(sample[i : i + batch])
            best = min(best, time.process_time() - t0)
        return 1e6 * best / len(sample)

    n, ef = pipe.settings.candidates, pipe.settings.ef_search
    rows = [(size, cpu_us(pipe.encode, size),
             cpu_us(lambda q: pipe.index.query(np.stack([known[x] for x in q]), n, ef), size))
            for size in sizes]
    pipe.encode = lambda q: np.stack([known[x] for x in q])  # type: ignore[method-assign]
    print(f"Search pipeline parts, {model.name}, one thread, CPU µs per query (least of "
          f"{repeats}); load average {load()}:")
    print()
    print("| batch | encoder (fp32) | after the encoder | of which HNSW query |")
    print("|---|---|---|---|")
    for size, enc, ann in rows:
        print(f"| {size} | {enc:.0f} | {cpu_us(lambda q: pipe.search(q, K), size):.0f} | "
              f"{ann:.0f} |")


# ---------------------------------------------------------------------------- served


def lua_script(queries: list[str], path: Path) -> None:
    """wrk script: one distinct ``/v1/search`` body per request, in turn."""
    bodies = [json.dumps({"query": q, "k": K}) for q in queries]
    bodies = [b for b in bodies if "]==]" not in b]
    lines = ["local bodies = {"] + [f"[==[{b}]==]," for b in bodies] + ["}"]
    lines += ["local n = 0",
              "local headers = {[\"Content-Type\"] = \"application/json\"}",
              "request = function()",
              "  n = n + 1",
              "  return wrk.format(\"POST\", \"/v1/search\", headers, "
              "bodies[(n % #bodies) + 1])",
              "end"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")



def _ms(out: str, pct: str) -> float:
    value = re.search(rf"^\s+{pct}\s+([\d.]+)(us|ms|s)\b", out, re.M)
    assert value is not None, out
    return float(value.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[value.group(2)]


@dataclass
class Served:
    name: str
    stack: Any
    procs: list[psutil.Process] = field(default_factory=list)

    def measure(self, seconds: float, conns: int, lua: Path) -> dict[str, float]:
        before = cpu_seconds(self.procs)
        out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s",
                              str(lua), self.stack.url + "/v1/search"], capture_output=True,
                             text=True, timeout=seconds + 60).stdout
        used = cpu_seconds(self.procs) - before
        qps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        total = re.search(r"(\d+) requests in", out)
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        socket_errors = re.search(r"Socket errors: (.*)", out)
        count = int(total.group(1)) if total else qps * seconds
        return {"qps": qps, "p50_ms": _ms(out, "50%"), "p99_ms": _ms(out, "99%"),
                "cpu_us": 1e6 * used / max(count, 1.0),
                "errors": float(int(errors.group(1)) if errors else 0)
                + (1.0 if socket_errors else 0.0)}


def start_stack(home: Path, work: Path, layout: Layout, batch: int) -> Served:
    from shopserve.testing import ShopserveProcess

    folder = work / f"serve-{layout}-b{batch}"
    folder.mkdir()
    spec = {"home": str(home), "replicas": layout.replicas,
            # the same admission limit for both, so that neither refuses at 32 connections
            "server": {"threads": layout.threads, "max_in_flight": 64},
            "models": [{"ref": "search@production", "cache": False,
                        "batching": {"max_batch_size": batch}}]}
    stack = ShopserveProcess.from_spec(spec, folder, startup_timeout_s=180).start()
    sup = psutil.Process(stack.process.pid)
    return Served(f"b{batch}", stack, [sup, *sup.children(recursive=True)])


# ---------------------------------------------------------------------------- report


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layouts", default="2x1,1x2",
                        help="replicas x intra-op threads, comma-separated (each is measured)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--batch-sizes", default="1,8,16,32,64", help="offline sweep")
    parser.add_argument("--max-batch-size", type=int, default=32, help="served, batching on")
    parser.add_argument("--queries", type=int, default=1500, help="homedepot training sample")
    parser.add_argument("--model", type=Path, help="a trained search model folder")
    parser.add_argument("--tiny", action="store_true",
                        help="a small bag-of-words model on a small demo shop (quick check)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--stages", action="store_true",
                        help="only time the pipeline's parts offline (no servers, no wrk)")
    args = parser.parse_args()
    if args.stages:
        model, queries = real_model(args.model, args.queries)
        stages(model, queries, [int(x) for x in args.batch_sizes.split(",")])
        return
    if shutil.which("wrk") is None:
        sys.exit("needs wrk (apt-get install -y wrk)")
    layouts = [Layout.parse(x) for x in args.layouts.split(",")]
    sizes = [int(x) for x in args.batch_sizes.split(",")]
    seconds = int(max(1, round(args.seconds)))
    work = Path(tempfile.mkdtemp(prefix="shopserve-bench-search-"))
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    try:
        t0 = time.monotonic()
        if args.tiny:
            model, queries = tiny_model(work)
        else:
            model, queries = real_model(args.model, args.queries)
        queries = queries[:5000]
        gate = build_registry(model, work / "home")
        lua = work / "search.lua"
        lua_script(queries, lua)
        from shopserve.models.search import SearchPipeline
        from shopserve.registry import Registry

        loaded = Registry.open(work / "home").load("search@production")
        catalog = len(SearchPipeline(loaded.meta.config, loaded.files).product_ids)
        say(f"# Search endpoint speed ({time.strftime('%Y-%m-%d %H:%M')})")
        say()
        say(f"Model: {'tiny bag-of-words encoder (--tiny)' if args.tiny else 'all-MiniLM-L6-v2'}"
            f" from {model}, catalog {catalog} products; served version {gate['ref']} = "
            f"`{RECIPE}` child made by shopserve.optimize (top-10 agreement "
            f"{gate['topk_agreement']:.3f}, {gate['size_bytes'] / 2**20:.0f} MiB). "
            f"{len(queries)} distinct queries, k {K}. Setup took {time.monotonic() - t0:.0f} s.")
        say(f"Load: wrk 1 thread, {args.connections} connections, {seconds} s per measurement; "
            f"**the load generator shares this {psutil.cpu_count()}-CPU machine with the "
            f"servers**. Cache off, distinct queries, server.max_in_flight 64 for both servers. "
            f"Load average (1/5/15 min) at start: {load()}.")
        say()
        results: dict[str, Any] = {"gate": gate, "catalog": catalog, "queries": len(queries),
                                   "connections": args.connections, "seconds": seconds,
                                   "tiny": args.tiny, "layouts": {}}
        for layout in layouts:
            res = results["layouts"][str(layout)] = {"sweep": {}, "rounds": []}
            say(f"## Layout {layout} ({layout.replicas} replica(s) x {layout.threads} intra-op "
                f"thread(s))")
            say()
            offline = Offline(work / "home", layout, queries)
            batched = start_stack(work / "home", work, layout, args.max_batch_size)
            single = start_stack(work / "home", work, layout, 1)
            try:
                say(f"Offline sweep ({layout.replicas} process(es) x {layout.threads} "
                    f"thread(s), queries/s summed; CPU µs per query):")
                say()
                say("| batch | encoder q/s | encoder CPU µs/q | pipeline q/s | "
                    "pipeline CPU µs/q |")
                say("|---|---|---|---|---|")
                for size in sizes:
                    enc = offline.measure("encoder", size, max(1.0, args.seconds / 2))
                    full = offline.measure("pipeline", size, max(1.0, args.seconds / 2))
                    res["sweep"][size] = {"encoder": enc, "pipeline": full}
                    say(f"| {size} | {enc[0]:.0f} | {enc[1]:.0f} | {full[0]:.0f} | "
                        f"{full[1]:.0f} |")
                # by CPU per query: on a shared machine a short window's q/s is mostly luck,
                # while cores / CPU per query is the throughput the loop would reach alone
                best_enc = min(sizes, key=lambda s: res["sweep"][s]["encoder"][1])
                best_full = min(sizes, key=lambda s: res["sweep"][s]["pipeline"][1])
                say()
                say(f"Best offline batch (least CPU per query): encoder {best_enc}, pipeline "
                    f"{best_full}; the rounds below re-measure both at those sizes next to the "
                    f"servers.")
                say()
                for served in (batched, single):  # warm both
                    served.measure(1, args.connections, lua)
                say(f"| round | load avg | encoder offline q/s (b{best_enc}) | pipeline offline "
                    f"q/s (b{best_full}) | served q/s, p50/p99 ms, CPU µs/q (batching ≤ "
                    f"{args.max_batch_size}) | per-request q/s, p50/p99 ms, CPU µs/q | "
                    f"served / encoder | served / pipeline | served / per-request | CPU per query: "
                    f"encoder / served, per-request / served |")
                say("|---|---|---|---|---|---|---|---|---|---|")
                for rnd in range(args.rounds):
                    avg = load()
                    enc = offline.measure("encoder", best_enc, args.seconds)
                    full = offline.measure("pipeline", best_full, args.seconds)
                    b = batched.measure(seconds, args.connections, lua)
                    s = single.measure(seconds, args.connections, lua)
                    row = {"load": avg, "encoder": enc, "pipeline": full, "served": b,
                           "per_request": s, "vs_encoder": b["qps"] / enc[0],
                           "vs_pipeline": b["qps"] / full[0], "vs_per_request": b["qps"] / s["qps"],
                           "cpu_vs_encoder": enc[1] / b["cpu_us"],
                           "cpu_vs_per_request": s["cpu_us"] / b["cpu_us"]}
                    res["rounds"].append(row)
                    say(f"| {rnd + 1} | {avg} | {enc[0]:.0f} ({enc[1]:.0f} µs) | {full[0]:.0f} "
                        f"({full[1]:.0f} µs) | {b['qps']:.0f}, {b['p50_ms']:.1f}/{b['p99_ms']:.1f}"
                        f", {b['cpu_us']:.0f}{_errs(b)} | {s['qps']:.0f}, {s['p50_ms']:.1f}/"
                        f"{s['p99_ms']:.1f}, {s['cpu_us']:.0f}{_errs(s)} | "
                        f"{row['vs_encoder']:.2f} | {row['vs_pipeline']:.2f} | "
                        f"{row['vs_per_request']:.2f} | {row['cpu_vs_encoder']:.2f}, "
                        f"{row['cpu_vs_per_request']:.2f} |")
                say()
            finally:
                offline.close()
                batched.stack.stop()
                single.stack.stop()
        say(f"Load average at the end: {load()}.")
        say()
        say("## Goals (median of the rounds, best layout)")
        say()
        best = max(results["layouts"].items(), key=lambda kv: statistics.median(
            r["served"]["qps"] for r in kv[1]["rounds"]))
        name, res = best
        med = {key: statistics.median(r[key] for r in res["rounds"])
               for key in ("vs_encoder", "vs_pipeline", "vs_per_request", "cpu_vs_encoder",
                            "cpu_vs_per_request")}
        p99 = statistics.median(r["served"]["p99_ms"] for r in res["rounds"])
        results["best_layout"], results["goals"] = name, {**med, "p99_ms": p99}
        verdicts = [("served ≥ 0.8 × the encoder's best offline q/s", med["vs_encoder"],
                     med["vs_encoder"] >= GOAL["vs_offline"]),
                    ("(for reference: served / the whole pipeline offline)", med["vs_pipeline"],
                     None),
                    ("(load-robust: the encoder's offline CPU per query / served CPU per query)",
                     med["cpu_vs_encoder"], None),
                    ("served ≥ 1.5 × per-request server", med["vs_per_request"],
                     med["vs_per_request"] >= GOAL["vs_per_request"]),
                    ("p99 ≤ 50 ms", p99, p99 <= GOAL["p99_ms"])]
        say(f"Best layout by served q/s: {name}.")
        say()
        for text, value, met in verdicts:
            flag = "" if met is None else (" — met" if met else " — **not met**")
            say(f"- {text}: {value:.2f}{flag}")
        args.out.mkdir(parents=True, exist_ok=True)
        stem = "search-serve-tiny" if args.tiny else "search-serve"
        (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str),
                                               encoding="utf-8")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _errs(result: dict[str, float]) -> str:
    return f" (**{result['errors']:.0f} errors**)" if result["errors"] else ""


if __name__ == "__main__":
    main()
