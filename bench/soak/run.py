"""Soak run (not CI): a deployment held at ~70% of capacity with model updates and replica kills.

Reports requests lost (after the client's retries), p99 per time window, memory slope per
replica process (after its warm-up), file descriptors and threads of the whole deployment
before and after, then 100 load/unload cycles of one version in one process. Run::

    python bench/soak/run.py --minutes 30 --update-every 5 --kill-every 2
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "serve"))

from serve_models import click_table, ctr_row  # noqa: E402

from shopserve import Client  # noqa: E402
from shopserve.models import CtrTrainSpec, train_ctr_table  # noqa: E402
from shopserve.registry import Registry  # noqa: E402
from shopserve.testing import ShopserveProcess  # noqa: E402

TOKEN = "soak-admin"


@dataclass
class Tally:
    ok: int = 0
    lost: list[str] = field(default_factory=list)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (sent at, seconds)


def build_registry(home: Path) -> None:
    reg = Registry.open(home)
    for seed in (0, 1):
        trained = train_ctr_table(click_table(rows=2000, seed=seed), home / f"t{seed}",
                                  CtrTrainSpec(seed=seed))
        reg.register("ctr", trained.files, trained.kind, signature=trained.signature,
                     config=trained.config, metrics=trained.metrics)
    reg.promote("ctr@1", "production")


class RawClient:
    """A lean keep-alive HTTP/1.1 client for ``POST /v1/rank``, retrying like ``shopserve.Client``
    (a new connection after a connection error, 429, 502, 503 or 504): httpx costs more CPU per
    request than the server does, which would make the generator the bottleneck."""

    RETRY = frozenset({429, 502, 503, 504})

    def __init__(self, host: str, port: int, retries: int = 8) -> None:
        self.host, self.port, self.retries = host, port, retries
        self.conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def rank(self, row: dict[str, object]) -> None:
        body = orjson.dumps({"candidates": [row]})
        request = (b"POST /v1/rank HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json"
                   b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        for attempt in range(self.retries + 1):
            try:
                status = await asyncio.wait_for(self._send(request), 5.0)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                status = 0
            if status == 200:
                return
            self.close()
            if (status not in self.RETRY and status != 0) or attempt == self.retries:
                raise RuntimeError(f"rank failed with status {status} after {attempt + 1} tries")
            await asyncio.sleep(0.05 * 2 ** attempt if status != 503 else 1.0)

    async def _send(self, request: bytes) -> int:
        if self.conn is None:
            self.conn = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.conn
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
            if line.lower() == b"connection: close":
                self.conn = None  # read the body, then reconnect next time
        await reader.readexactly(length)
        if self.conn is None:
            writer.close()
        return status

    def close(self) -> None:
        if self.conn is not None:
            self.conn[1].close()
            self.conn = None


async def load(url: str, rate: float, seconds: float, workers: int, tally: Tally) -> None:
    """``rate`` requests/s for ``seconds``, open loop, each retried until answered."""
    host, port = url.removeprefix("http://").split(":")
    start = time.monotonic()

    async def worker(w: int) -> None:
        client = RawClient(host, int(port))
        n = 0
        while True:
            due = start + (n * workers + w) / rate
            if due - start > seconds or time.monotonic() - start > seconds:
                client.close()
                return
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            sent = time.monotonic()
            try:
                await client.rank(ctr_row(random.randrange(10**6)))
                tally.ok += 1
                tally.latencies.append((sent - start, time.monotonic() - sent))
            except Exception as exc:
                tally.lost.append(repr(exc))
            n += 1

    await asyncio.gather(*(worker(w) for w in range(workers)))


def capacity(url: str, seconds: float = 5.0, workers: int = 64) -> float:
    """Requests/s this load generator gets through in a closed loop (same machine)."""
    tally = Tally()
    asyncio.run(load(url, 1e9, seconds, workers, tally))  # no pacing: as fast as answered
    return tally.ok / seconds


def deployment(sup: psutil.Process) -> list[psutil.Process]:
    return [sup, *sup.children(recursive=True)]


def fds_threads(procs: list[psutil.Process]) -> tuple[int, int, int, int]:
    """(supervisor fds, supervisor threads, replicas' fds, replicas' threads): a leak in the
    long-lived supervisor matters; replicas are replaced and hold their clients' connections."""
    counts = [0, 0, 0, 0]
    for i, p in enumerate(procs):
        try:
            counts[0 if i == 0 else 2] += p.num_fds()
            counts[1 if i == 0 else 3] += p.num_threads()
        except psutil.NoSuchProcess:
            pass
    return counts[0], counts[1], counts[2], counts[3]


def replicas(sup: psutil.Process) -> list[psutil.Process]:
    return [c for c in sup.children(recursive=True)
            if "shopserve.serve.replica" in " ".join(c.cmdline())]


def slope_mib_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) in MiB per minute."""
    if len(samples) < 3:
        return float("nan")
    ts, ms = [t for t, _ in samples], [m for _, m in samples]
    return 60 * statistics.linear_regression(ts, ms).slope


async def chaos(url: str, sup: psutil.Process, seconds: float, update_s: float, kill_s: float,
                memory: dict[int, list[tuple[float, float]]], events: list[str]) -> None:
    start = time.monotonic()
    next_update, next_kill, version = update_s, kill_s, 1
    with Client(url, admin_token=TOKEN, timeout_s=10) as admin:
        while (now := time.monotonic() - start) < seconds:
            for r in replicas(sup):
                born = r.create_time()
                if time.time() - born > 20:  # after its warm-up
                    memory.setdefault(r.pid, []).append((now, r.memory_info().rss / 2**20))
            if now >= next_kill:
                victim = random.choice(replicas(sup))
                os.kill(victim.pid, signal.SIGKILL)
                events.append(f"{now:6.0f} s: killed replica {victim.pid}")
                next_kill += kill_s
            if now >= next_update and admin.admin("status")["job"] is None:
                version = 3 - version
                admin.admin("deploy", model="ctr", ref=f"ctr@{version}")
                events.append(f"{now:6.0f} s: rolling update to ctr@{version}")
                next_update += update_s
            await asyncio.sleep(2.0)


def cycles(home: Path, n: int) -> list[float]:
    """RSS (MiB) after each of ``n`` load/unload cycles of ctr@1 in this one process, done the
    way a replica loads a version (registry checks, pipeline, batchers, warm-up)."""
    from shopserve.serve.dataplane import DataPlane
    from shopserve.serve.spec import parse_deployment

    spec = parse_deployment({"home": str(home), "models": [{"ref": "ctr@1"}]})
    me = psutil.Process()
    rss = []
    for _ in range(n):
        plane = DataPlane.load(spec)
        plane.warm_up()
        asyncio.run(plane.close())
        del plane
        gc.collect()
        rss.append(me.memory_info().rss / 2**20)
    return rss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--update-every", type=float, default=5, help="minutes")
    parser.add_argument("--kill-every", type=float, default=2, help="minutes")
    parser.add_argument("--load", type=float, default=0.7, help="share of measured capacity")
    parser.add_argument("--cycles", type=int, default=100)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="shopserve-soak-"))
    build_registry(work / "home")
    spec = {"home": str(work / "home"), "replicas": 2, "server": {"admin_token": TOKEN},
            "health": {"interval_s": 0.5, "timeout_s": 1.0},
            "models": [{"ref": "ctr@production", "cache": False}]}
    seconds = args.minutes * 60
    with ShopserveProcess.from_spec(spec, work) as stack:
        sup = psutil.Process(stack.process.pid)  # type: ignore[union-attr]
        cap = capacity(stack.url)
        rate = args.load * cap
        time.sleep(2)
        before = fds_threads(deployment(sup))
        print(f"capacity {cap:.0f} req/s (this Python generator, same 2-core machine); "
              f"soak at {rate:.0f} req/s for {args.minutes:g} min, update every "
              f"{args.update_every:g} min, kill every {args.kill_every:g} min; "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)
        tally = Tally()
        memory: dict[int, list[tuple[float, float]]] = {}
        events: list[str] = []

        async def both() -> None:
            await asyncio.gather(
                load(stack.url, rate, seconds, 64, tally),
                chaos(stack.url, sup, seconds, args.update_every * 60, args.kill_every * 60,
                      memory, events))

        asyncio.run(both())
        with Client(stack.url, admin_token=TOKEN, timeout_s=10) as admin:
            deadline = time.monotonic() + 120
            while admin.admin("status")["job"] is not None and time.monotonic() < deadline:
                time.sleep(1)
        time.sleep(3)
        after = fds_threads(deployment(sup))
        report(tally, memory, events, before, after, seconds)
    rss = cycles(work / "home", args.cycles)
    print(f"{args.cycles} load/unload cycles in one process: RSS after cycle 1 {rss[0]:.1f} MiB, "
          f"after cycle {len(rss)} {rss[-1]:.1f} MiB ({100 * (rss[-1] / rss[0] - 1):+.1f} %, "
          f"bound 5 %), max {max(rss):.1f} MiB")
    subprocess.run(["rm", "-rf", str(work)], check=False)


def report(tally: Tally, memory: dict[int, list[tuple[float, float]]], events: list[str],
           before: tuple[int, ...], after: tuple[int, ...], seconds: float) -> None:
    for e in events:
        print("  " + e)
    print(f"requests answered {tally.ok} ({tally.ok / seconds:.0f} req/s), lost "
          f"{len(tally.lost)} {tally.lost[:3]}")
    window = max(10.0, seconds / 10)
    print(f"p99 per {window:.0f} s window (ms):", end="")
    t = 0.0
    while t < seconds:
        lat = sorted(s for at, s in tally.latencies if t <= at < t + window)
        if lat:
            print(f" {1000 * lat[int(0.99 * (len(lat) - 1))]:.1f}", end="")
        t += window
    print()
    for pid, samples in memory.items():
        if len(samples) >= 3:
            print(f"replica {pid}: {len(samples)} samples over {samples[-1][0] - samples[0][0]:.0f}"
                  f" s, RSS {samples[0][1]:.1f} -> {samples[-1][1]:.1f} MiB, slope "
                  f"{slope_mib_per_min(samples):+.2f} MiB/min")
    print(f"supervisor fds {before[0]} -> {after[0]}, threads {before[1]} -> {after[1]}; "
          f"replicas' fds {before[2]} -> {after[2]}, threads {before[3]} -> {after[3]}")


if __name__ == "__main__":
    main()
