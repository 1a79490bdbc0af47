"""``bench/run-peers``: install, serve, load and tabulate every peer; one table per run."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from peers.catalog import SHOPSERVE, PeerSpec, find_peers
from peers.envs import PEERS_DIR, EnvError, ensure_env
from peers.report import markdown
from peers.runner import PeerResult, Pinning, RunSettings, run_peer
from peers.workloads import Skipped, Workload, prepare
from peers.wrk import Cell, available

RESULTS = Path(__file__).resolve().parents[1] / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bench/run-peers", description=__doc__)
    ap.add_argument("--peers", help="comma-separated peer names (default: all); "
                    "shopserve always runs, as the reference of the ratios")
    ap.add_argument("--workloads", default="ctr,search", help="ctr, search (default both)")
    ap.add_argument("--concurrency", default="1,16,64", help="connections per level")
    ap.add_argument("--duration", type=int, default=3, help="seconds measured per level")
    ap.add_argument("--warmup", type=int, default=1, help="seconds of load before each level")
    ap.add_argument("--pin", choices=["auto", "split", "none"], default="auto",
                    help="split: wrk on the last CPU, servers on the others (auto: when ≥ 2)")
    ap.add_argument("--budget", type=float, default=0,
                    help="seconds for the whole run; peers not started by then get a row "
                         "saying so (0: no limit)")
    ap.add_argument("--in-place", action="store_true",
                    help="run every peer with this interpreter instead of its own venv")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where the table goes")
    ap.add_argument("--name", default="peers", help="file stem of the results")
    ap.add_argument("--models-dir", type=Path, default=PEERS_DIR / "models",
                    help="where the exported models are cached")
    ap.add_argument("--list", action="store_true", help="list the peers and exit")
    ap.add_argument("--render", type=Path, metavar="JSON",
                    help="only write the Markdown table again from a run's JSON")
    return ap.parse_args(argv)


def pinning(mode: str) -> Pinning:
    cpus = sorted(os.sched_getaffinity(0))
    if mode == "none" or (mode == "auto" and len(cpus) < 2):
        return Pinning(None, None)
    if len(cpus) < 2:
        raise SystemExit("--pin split needs at least 2 CPUs")
    return Pinning(",".join(map(str, cpus[:-1])), str(cpus[-1]))


def conditions() -> str:
    load = os.getloadavg()
    return (f"{os.cpu_count()} CPUs, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} "
            "at the start (the machine is shared)")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, Linux {platform.release()}, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for p in find_peers(None):
            print(f"{p.name:22s} {p.label} ({p.settings})")
        return 0
    if args.render is not None:
        render(args.render)
        return 0
    if not available():
        raise SystemExit("needs wrk (apt-get install -y wrk)")
    peers = find_peers(args.peers.split(",") if args.peers else None)
    concs = tuple(int(c) for c in args.concurrency.split(","))
    pin = pinning(args.pin)
    settings = RunSettings(concs, args.duration, args.warmup, pin,
                           args.out / f"{args.name}-work")
    run: dict[str, Any] = {
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(), "conditions": conditions(), "pinning": pin.describe(),
        "load": (f"wrk {wrk_version()}, 1 thread, closed loop of N keep-alive connections, "
                 f"{args.warmup} s warm-up then {args.duration} s measured per level, loopback"),
        "concurrency": list(concs), "duration_s": args.duration, "warmup_s": args.warmup}
    workloads = prepare(args.workloads.split(","), args.models_dir)
    run["workloads"] = [{"name": w.name, "title": w.title if isinstance(w, Workload) else w.name,
                         **({"skipped": w.reason} if isinstance(w, Skipped) else {})}
                        for w in workloads]
    results: list[PeerResult] = []
    try:
        run_all(peers, [w for w in workloads if isinstance(w, Workload)], settings,
                args.in_place, time.monotonic() + args.budget if args.budget else None, results)
    finally:  # what was measured is written, even when the run is interrupted
        run["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
        run["conditions"] += f"; {os.getloadavg()[0]:.1f} at the end"
        write(args.out, args.name, run, peers, results)
    return 0


def run_all(peers: list[PeerSpec], workloads: list[Workload], settings: RunSettings,
            in_place: bool, deadline: float | None, results: list[PeerResult]) -> None:
    # shopserve first, so every later line can print its ratio
    for peer in sorted(peers, key=lambda p: p.name != SHOPSERVE):
        if deadline is not None and time.monotonic() > deadline:
            results += [PeerResult(peer.name, w.name, "not run: the --budget was spent")
                        for w in workloads]
            continue
        try:
            python = Path(sys.executable) if in_place else ensure_env(peer)
        except EnvError as exc:
            results += [PeerResult(peer.name, w.name, f"not installed: {exc}") for w in workloads]
            print(f"{peer.name}: not installed: {exc}", flush=True)
            continue
        for w in workloads:
            t0 = time.perf_counter()
            r = run_peer(peer, python, w, settings)
            results.append(r)
            cells = "; ".join(f"c{c.concurrency} {c.rps:.0f}/s p99 {c.p99_ms} ms"
                              for c in r.cells)
            print(f"{peer.name} {w.name}: {r.status}, cold start {r.cold_start_s or 0:.2f} s, "
                  f"RSS {r.rss_mib or 0:.0f} MiB; {cells} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)


def write(out: Path, name: str, run: dict[str, Any], peers: list[PeerSpec],
          results: list[PeerResult]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = {**run, "peers": [{"name": p.name, "label": p.label, "settings": p.settings,
                              "batches": p.batches, "ceiling": p.ceiling} for p in peers],
            "results": [r.to_dict() for r in results]}
    (out / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    (out / f"{name}.md").write_text(markdown(run, peers, results))
    print(f"wrote {out / name}.md and .json")


def render(path: Path) -> None:
    """The Markdown table of a saved run, with the peers' labels and settings of that run."""
    data = json.loads(path.read_text())
    known = {p.name: p for p in find_peers(None)}
    peers = [dataclasses.replace(known[p["name"]], label=p["label"], settings=p["settings"],
                                 batches=p["batches"], ceiling=p["ceiling"])
             for p in data["peers"] if p["name"] in known]
    results = [PeerResult(r["peer"], r["workload"], r["status"], r["cold_start_s"], r["rss_mib"],
                          [Cell(**c) for c in r["cells"]]) for r in data["results"]]
    path.with_suffix(".md").write_text(markdown(data, peers, results))
    print(f"wrote {path.with_suffix('.md')}")


def wrk_version() -> str:
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
    first = (out.stdout or out.stderr).strip().splitlines()
    return first[0].split()[1] if first and len(first[0].split()) > 1 else "?"
