"""Overload: the full stack far past its capacity; are the excess requests refused fast, and do
the admitted ones keep their latency?

wrk (closed loop, many more connections than the replicas admit) saturates a 2-replica
deployment with one-row CTR requests while a probe sends one request at a time on fresh
connections and times each answer by its status. Run: ``python bench/serve/overload.py``.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import LUA, build_registry  # noqa: E402

from shopserve.testing import ShopserveProcess  # noqa: E402

BODY = b'{"candidates":[{"I1":0.5,"I2":1.0,"C1":"a"}]}'


def probe(port: int, stop: threading.Event, out: list[tuple[int, float]]) -> None:
    """One request at a time, each on a new connection (so the kernel spreads them)."""
    request = (b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
    while not stop.is_set():
        start = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(request)
                head = sock.recv(64)
            out.append((int(head.split(b" ", 2)[1]), time.perf_counter() - start))
        except (OSError, IndexError, ValueError):
            out.append((0, time.perf_counter() - start))
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=1024)
    parser.add_argument("--max-in-flight", type=int, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="shopserve-overload-"))
    lua = work / "rank.lua"
    lua.write_text(LUA.replace("%%", "%"), encoding="utf-8")
    build_registry(work / "home")
    spec: dict[str, object] = {"home": str(work / "home"), "replicas": 2,
                               "models": [{"ref": "ctr@production", "cache": False}]}
    if args.max_in_flight is not None:
        spec["server"] = {"max_in_flight": args.max_in_flight}
    stack = ShopserveProcess.from_spec(spec, work).start()
    port = int(stack.url.rsplit(":", 1)[1])
    try:
        quiet: list[tuple[int, float]] = []
        stop = threading.Event()
        t = threading.Thread(target=probe, args=(port, stop, quiet))
        t.start()
        time.sleep(2)
        stop.set()
        t.join()
        loaded: list[tuple[int, float]] = []
        stop = threading.Event()
        t = threading.Thread(target=probe, args=(port, stop, loaded))
        wrk = subprocess.Popen(["wrk", "-t1", f"-c{args.connections}", f"-d{args.seconds}s",
                                "--timeout", "30s", "-s", str(lua), stack.url + "/v1/rank"],
                               stdout=subprocess.PIPE, text=True)
        time.sleep(1)  # let the connections open and the queues fill
        t.start()
        out, _ = wrk.communicate(timeout=args.seconds + 60)
        stop.set()
        t.join()
        print(f"{args.connections} wrk connections, 2 replicas, in-flight limit "
              f"{args.max_in_flight or 'default'}; the load generator shares this machine")
        print("wrk:", " ".join(line.strip() for line in out.splitlines()
                               if line.strip().startswith(("Non-2xx", "Requests/sec"))))
        for name, samples in (("idle", quiet), ("overloaded", loaded)):
            for status in sorted({s for s, _ in samples}):
                ms = np.array([d for s, d in samples if s == status]) * 1000
                print(f"probe {name:10s} status {status}: {len(ms):4d} answers, p50 "
                      f"{np.percentile(ms, 50):8.2f} ms, p99 {np.percentile(ms, 99):8.2f} ms")
    finally:
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
