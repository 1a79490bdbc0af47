"""A separate OS process acting on a shared registry home, for the concurrency tests.

Usage: python registry_worker.py (register|promote|load|gc) HOME START_FILE STOP_FILE [ARG]
Each role waits for START_FILE so that all workers race, and prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from shopserve.registry import Registry
from shopserve.types import ModelKind

DEADLINE_S = 60.0


def wait_for(path: Path) -> None:
    end = time.monotonic() + DEADLINE_S
    while not path.exists():
        if time.monotonic() > end:
            raise SystemExit(f"start file {path} never appeared")
        time.sleep(0.005)


def register(reg: Registry, worker: int, count: int, scratch: Path) -> dict[str, object]:
    versions = []
    for i in range(count):
        art = scratch / f"w{worker}-{i}.bin"
        art.write_bytes(f"worker {worker} item {i}\n".encode() * 200)
        mv = reg.register(
            "ctr", {"model.onnx": art}, ModelKind.RANK, metrics={"worker": worker, "item": i}
        )
        versions.append(mv.version)
    return {"versions": versions}


def promote(reg: Registry, rounds: int) -> dict[str, object]:
    for i in range(rounds):
        reg.promote(f"ctr@{1 + i % 2}", "production")
    return {"promotions": rounds}


def load(reg: Registry, stop: Path) -> dict[str, object]:
    seen: dict[int, int] = {}
    end = time.monotonic() + DEADLINE_S
    while not stop.exists() and time.monotonic() < end:
        loaded = reg.load("ctr@production")
        expected = f"version {loaded.meta.version}\n".encode() * 500
        if loaded.read_bytes("model.onnx") != expected:
            raise SystemExit(f"{loaded.meta.ref} handed out bytes of another version")
        seen[loaded.meta.version] = seen.get(loaded.meta.version, 0) + 1
    return {"loads": seen}


def collect(reg: Registry, stop: Path) -> dict[str, object]:
    runs = 0
    end = time.monotonic() + DEADLINE_S
    while not stop.exists() and time.monotonic() < end:
        reg.gc()
        runs += 1
    return {"gc_runs": runs}


def main(argv: list[str]) -> None:
    role, home, start, stop = argv[0], Path(argv[1]), Path(argv[2]), Path(argv[3])
    reg = Registry.open(home)
    wait_for(start)
    if role == "register":
        worker, count = (int(x) for x in argv[4].split(":"))
        result = register(reg, worker, count, Path(argv[5]))
    elif role == "promote":
        result = promote(reg, int(argv[4]))
    elif role == "load":
        result = load(reg, stop)
    else:
        result = collect(reg, stop)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
