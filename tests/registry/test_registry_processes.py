"""Several OS processes on one registry home: no lost update, no half-written version seen."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import cast

from shopserve.registry import Registry
from shopserve.types import ModelKind

WORKER = Path(__file__).with_name("registry_worker.py")
TIMEOUT_S = 120


def _start(role: str, home: Path, tmp: Path, *extra: str) -> subprocess.Popen[str]:
    args = [sys.executable, str(WORKER), role, str(home), str(tmp / "start"), str(tmp / "stop")]
    return subprocess.Popen(
        [*args, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(proc: subprocess.Popen[str]) -> dict[str, object]:
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, err
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def test_concurrent_registrations_get_distinct_consecutive_versions(tmp_path: Path) -> None:
    home, workers, per_worker = tmp_path / "home", 6, 4
    Registry.open(home)
    scratch = [tmp_path / f"scratch{w}" for w in range(workers)]
    procs = []
    for w, folder in enumerate(scratch):
        folder.mkdir()
        procs.append(_start("register", home, tmp_path, f"{w}:{per_worker}", str(folder)))
    collector = _start("gc", home, tmp_path)  # gc sweeping throughout must not hurt anyone
    (tmp_path / "start").touch()
    results = [_finish(p) for p in procs]
    (tmp_path / "stop").touch()
    assert _finish(collector)["gc_runs"] != 0

    numbers = sorted(v for r in results for v in cast(list[int], r["versions"]))
    assert numbers == list(range(1, workers * per_worker + 1))
    reg = Registry.open(home)
    made = set()
    for mv in reg.list_versions("ctr"):
        worker, item = int(mv.metrics["worker"]), int(mv.metrics["item"])
        made.add((worker, item))
        expected = f"worker {worker} item {item}\n".encode() * 200
        assert reg.load(mv.ref).read_bytes("model.onnx") == expected, mv.ref
    assert made == {(w, i) for w in range(workers) for i in range(per_worker)}
    assert reg.check() == []


def test_promotion_racing_with_loads(tmp_path: Path) -> None:
    home = tmp_path / "home"
    reg = Registry.open(home)
    for v in (1, 2):
        art = tmp_path / f"v{v}.onnx"
        art.write_bytes(f"version {v}\n".encode() * 500)
        reg.register("ctr", {"model.onnx": art}, ModelKind.RANK)
    reg.promote("ctr@1", "production")
    loaders = [_start("load", home, tmp_path) for _ in range(2)]
    promoter = _start("promote", home, tmp_path, "200")
    (tmp_path / "start").touch()
    assert _finish(promoter) == {"promotions": 200}
    (tmp_path / "stop").touch()
    for loader in loaders:
        seen = _finish(loader)["loads"]
        assert isinstance(seen, dict) and set(seen) <= {"1", "2"} and sum(seen.values()) > 0
    assert reg.get("ctr@production").version == 2  # the 200th promotion was ctr@2
    assert reg.rollback("ctr", "production").version == 1
