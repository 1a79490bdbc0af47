"""Why are refusals (429) slower than 5 ms in the overload drill? Measure where the time goes.

    python bench/drills/refusals.py [--seconds 4] [--out bench/results/drills/refusals.json]

Starts the drill bench's deployment (``run.py``), measures its capacity for the overload drill's
request (100 candidates, closed loop, as the drill does) and then offers spikes with h2load,
each while two probes run in this process on their own threads:

- a *liveness probe*: ``GET /v2/health/live`` on kept-alive connections (one per replica,
  found by the answering pid): never refused and almost no work, so its latency is the time a
  replica's event loop takes to come round to a ready socket;
- a *refusal probe*: one request at a time on a fresh connection, timed to the status line, by
  a client that is not h2load (is h2load's own event loop part of the refusal time?).

CPU seconds of the replicas and of h2load, and the machine's idle time, are read over each
spike. The cases: the drill's request (a page of 100 candidates, 55 kB) at 5× capacity with 50
and with 100 requests/s per h2load connection, and at 2×; a one-candidate request padded to the
same size (an unknown field), at the 5× case's requests/s, with 50 and 500 requests/s per
connection: the same bytes to read for every refusal, but admitted requests that cost little.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
from run import deployment, start_redis

from shopserve.drill.deployment import OwnedDeployment
from shopserve.drill.load import build_requests
from shopserve.drill.measures import percentile
from shopserve.drill.spec import LoadSpec, MixEntry, Route
from shopserve.drill.spike import SpikeProcess, SpikeRequest, closed_loop, plan_spike
from shopserve.testing import cpu_seconds


def _pcts(values: list[float]) -> dict[str, float | None]:
    return {f"p{q}_ms": None if not values else round((percentile(values, q / 100) or 0) * 1000,
                                                       2) for q in (50, 99)}


def liveness_probe(url: str, stop: threading.Event, out: list[float]) -> None:
    clients = [httpx.Client(base_url=url, timeout=10) for _ in range(6)]
    try:
        while not stop.is_set():
            for client in clients:
                start = time.perf_counter()
                client.get("/v2/health/live")
                out.append(time.perf_counter() - start)
            time.sleep(0.01)
    finally:
        for client in clients:
            client.close()


def refusal_probe(port: int, path: str, body: bytes, stop: threading.Event,
                  out: list[tuple[int, float]]) -> None:
    request = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    while not stop.is_set():
        start = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(request)
                head = sock.recv(64)
            out.append((int(head.split(b" ", 2)[1]), time.perf_counter() - start))
        except (OSError, IndexError, ValueError):
            out.append((0, time.perf_counter() - start))
        time.sleep(0.01)



def spike_case(url: str, request: SpikeRequest, rate: float, per_connection: float,
               seconds: float, replicas: list[psutil.Process]) -> dict[str, Any]:
    port = int(url.rsplit(":", 1)[1])
    live: list[float] = []
    refused: list[tuple[int, float]] = []
    stop = threading.Event()
    plan = plan_spike(rate, per_connection, 1000)
    process = SpikeProcess(request, plan, seconds)
    h2load = psutil.Process(process.proc.pid)
    time.sleep(0.3)  # connections open
    threads = [threading.Thread(target=liveness_probe, args=(url, stop, live)),
               threading.Thread(target=refusal_probe,
                                args=(port, request.path, request.body.read_bytes(), stop,
                                      refused))]
    before = (cpu_seconds(replicas), cpu_seconds([h2load]), psutil.cpu_times().idle,
              time.monotonic())
    for t in threads:
        t.start()
    time.sleep(max(seconds - 0.8, 0.5))
    after = (cpu_seconds(replicas), cpu_seconds([h2load]), psutil.cpu_times().idle,
             time.monotonic())
    stop.set()
    for t in threads:
        t.join()
    records, error = process.finish()
    wall = after[3] - before[3]
    ok = [r.latency_s for r in records if 200 <= r.status < 300]
    shed = [r.latency_s for r in records if r.status == 429]
    return {
        "offered_rps": round(len(records) / seconds, 1), "h2load_error": error,
        "connections": plan.connections, "rps_per_connection": round(plan.rps_per_connection, 1),
        "answered": len(ok), "refused": len(shed),
        "admitted": _pcts(ok), "refusals_h2load": _pcts(shed),
        "refusals_probe": _pcts([d for s, d in refused if s == 429]),
        "probe_statuses": {str(s): sum(1 for x, _ in refused if x == s)
                           for s in sorted({s for s, _ in refused})},
        "liveness_probe": _pcts(live),
        "cpu_per_s": {"replicas": round((after[0] - before[0]) / wall, 2),
                      "h2load": round((after[1] - before[1]) / wall, 2),
                      "idle": round((after[2] - before[2]) / wall, 2)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/drills/refusals.json"))
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    redis_proc, redis_url = start_redis()
    owned = OwnedDeployment(deployment(Path(tempfile.mkdtemp(prefix="refusals-")), redis_url))
    work = Path(tempfile.mkdtemp(prefix="refusals-bodies-"))
    try:
        target = owned.start()
        replicas = [psutil.Process(r.pid) for r in target.replicas()]
        mix = [MixEntry(route=Route.RANK, rows=100)]
        path, body = build_requests(LoadSpec(rate=1, duration_s=1, mix=mix), limit=1)[0]
        (work / "page.json").write_bytes(orjson.dumps(body))
        size = len(orjson.dumps(body))
        one = {"candidates": body["candidates"][:1]}
        one["pad"] = "x" * (size - len(orjson.dumps(one)) - len(',"pad":""'))
        (work / "padded.json").write_bytes(orjson.dumps(one))
        page = SpikeRequest(target.url, path, work / "page.json")
        padded = SpikeRequest(target.url, path, work / "padded.json")
        calibration = closed_loop(page, 8, 2.0)
        capacity = sum(200 <= r.status < 300 for r in calibration) / 2.0
        cases = {}
        for name, request, rate, per_connection in (
                ("page, 5x capacity, 50/s per connection", page, 5 * capacity, 50.0),
                ("page, 5x capacity, 100/s per connection", page, 5 * capacity, 100.0),
                ("page, 2x capacity, 50/s per connection", page, 2 * capacity, 50.0),
                ("padded one candidate, 5x page req/s, 50/s per connection", padded,
                 5 * capacity, 50.0),
                ("padded one candidate, 5x page req/s, 500/s per connection", padded,
                 5 * capacity, 500.0)):
            cases[name] = spike_case(target.url, request, rate, per_connection, args.seconds,
                                     replicas)
            print(name, json.dumps(cases[name]), flush=True)
            time.sleep(1.0)
    finally:
        owned.stop()
        redis_proc.kill()
        redis_proc.wait()
    result = {"capacity_rps": capacity, "cases": cases,
              "machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)},
              "h2load": subprocess.run(["h2load", "--version"], capture_output=True,
                                       text=True, check=False).stdout.strip()}
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps({"capacity_rps": capacity, "out": str(args.out)}))


if __name__ == "__main__":
    main()
