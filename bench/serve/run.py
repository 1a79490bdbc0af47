"""Serving benchmark: the full shopserve stack vs a bare Starlette constant endpoint, as ratios.

Also the naive server (the same CTR pipeline called per request, no batching). All run the
same number of processes and are measured in the same run, alternating, with wrk
on loopback (one-row CTR requests, distinct rows, cache off so every request reaches the model).
The load generator shares this machine with the servers. Run: ``python bench/serve/run.py``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "serve"))

from designs import reuseport_socket  # noqa: E402,F401  (kept importable for the bare servers)
from serve_models import click_table  # noqa: E402

from shopserve.models import CtrTrainSpec, train_ctr_table  # noqa: E402
from shopserve.registry import Registry  # noqa: E402
from shopserve.testing import ShopserveProcess, cpu_seconds, free_port  # noqa: E402

LUA = """
local bodies = {}
for i = 1, 2000 do
  bodies[i] = string.format('{"candidates":[{"I1":%.4f,"I2":%.4f,"C1":"%s"}]}',
                            (i %% 97) / 10.0, (i %% 13) / 7.0, string.char(97 + i %% 5))
end
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", "/v1/rank", {["Content-Type"] = "application/json"},
                    bodies[(n %% 2000) + 1])
end
"""



def wrk(url: str, seconds: int, conns: int, lua: Path) -> tuple[float, float, float, int]:
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s",
                          str(lua), url + "/v1/rank"], capture_output=True, text=True,
                         timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, _ms(out, "50%"), _ms(out, "99%"), int(errors.group(1)) if errors else 0


def _ms(out: str, pct: str) -> float:
    value = re.search(rf"^\s+{pct}\s+([\d.]+)(us|ms|s)", out, re.M)
    assert value is not None, out
    return float(value.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[value.group(2)]


def measured(url: str, procs: list[psutil.Process], args: argparse.Namespace,
             lua: Path) -> tuple[tuple[float, float, float, int], float]:
    """wrk's numbers and the server processes' CPU microseconds per request (robust to other
    load on the machine, unlike req/s)."""
    before = cpu_seconds(procs)
    result = wrk(url, args.seconds, args.connections, lua)
    used = cpu_seconds(procs) - before
    return result, 1e6 * used / max(result[0] * args.seconds, 1.0)


def build_registry(home: Path) -> None:
    trained = train_ctr_table(click_table(rows=2000), home / "train", CtrTrainSpec())
    reg = Registry.open(home)
    reg.register("ctr", trained.files, trained.kind, signature=trained.signature,
                 config=trained.config, metrics=trained.metrics)
    reg.promote("ctr@1", "production")


def workers(processes: int, *mode: str) -> tuple[list[subprocess.Popen[bytes]], str]:
    """``processes`` copies of a designs.py worker sharing one port (SO_REUSEPORT)."""
    port = free_port()
    procs = [subprocess.Popen([sys.executable, str(HERE / "designs.py"), mode[0], str(port),
                               *mode[1:]]) for _ in range(processes)]
    time.sleep(3.0)
    return procs, f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("needs wrk (apt-get install -y wrk)")
    work = Path(tempfile.mkdtemp(prefix="shopserve-bench-"))
    lua = work / "rank.lua"
    lua.write_text(LUA.replace("%%", "%"), encoding="utf-8")
    build_registry(work / "home")
    spec = {"home": str(work / "home"), "replicas": args.replicas,
            "models": [{"ref": "ctr@production", "cache": False}]}
    print(f"wrk: 1 thread, {args.connections} connections, {args.seconds} s per run, one-row "
          f"CTR requests; the load generator SHARES this machine ({psutil.cpu_count()} CPUs) "
          f"with the servers")
    t0 = time.monotonic()
    stack = ShopserveProcess.from_spec(spec, work).start()
    ready_s = time.monotonic() - t0
    procs, bare_url = workers(args.replicas, "worker-reuseport")
    naive_procs, naive_url = workers(args.replicas, "worker-naive", str(work / "home"))
    procs += naive_procs
    try:
        sup = psutil.Process(stack.process.pid)  # type: ignore[union-attr]
        rss = [c.memory_info().rss / 2**20 for c in sup.children(recursive=True)
               if "shopserve.serve.replica" in " ".join(c.cmdline())]
        print(f"shopserve ready {ready_s:.2f} s after start (includes process start-up); "
              f"replica RSS MiB: {', '.join(f'{r:.0f}' for r in rss)}")
        wrk(stack.url, 1, args.connections, lua)  # warm both
        wrk(bare_url, 1, args.connections, lua)
        wrk(naive_url, 1, args.connections, lua)
        stack_procs = [sup, *sup.children(recursive=True)]
        bare_procs = [psutil.Process(p.pid) for p in procs if p not in naive_procs]
        naive_ps = [psutil.Process(p.pid) for p in naive_procs]
        for rnd in range(args.rounds):
            b, b_us = measured(bare_url, bare_procs, args, lua)
            s, s_us = measured(stack.url, stack_procs, args, lua)
            n, n_us = measured(naive_url, naive_ps, args, lua)
            print(f"round {rnd + 1}: bare {b[0]:8.0f} req/s p50 {b[1]:.2f} ms p99 {b[2]:.2f} ms"
                  f" {b_us:.0f} server-CPU-us/req | shopserve {s[0]:8.0f} req/s p50 {s[1]:.2f} "
                  f"ms p99 {s[2]:.2f} ms {s_us:.0f} server-CPU-us/req (non-2xx {s[3]}) | "
                  f"req/s ratio {s[0] / b[0]:.2f}, CPU-per-request ratio {b_us / s_us:.2f}")
            print(f"         naive inline-ONNX (same pipeline, no batching) {n[0]:8.0f} req/s "
                  f"p50 {n[1]:.2f} ms p99 {n[2]:.2f} ms {n_us:.0f} server-CPU-us/req | "
                  f"shopserve/naive req/s {s[0] / n[0]:.2f}")
    finally:
        stack.stop()
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
