"""``bench/run-peers`` end to end on its two cheapest peers: the bare Starlette ceiling and
shopserve, one second of load each, so that a broken harness shows up in CI.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("wrk") is None,
                                reason="needs wrk (scripts/setup-system installs it)")


def run_peers(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run-peers"), "--in-place", "--workloads", "ctr",
         "--models-dir", str(tmp_path / "models"), "--out", str(tmp_path / "results"), *args],
        capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_ceiling_and_shopserve_measured_in_one_table(tmp_path: Path) -> None:
    done = run_peers(tmp_path, "--peers", "starlette-const-1w", "--concurrency", "4",
                     "--duration", "1", "--warmup", "0")
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((tmp_path / "results" / "peers.json").read_text())
    results = {r["peer"]: r for r in data["results"]}
    assert set(results) == {"shopserve", "starlette-const-1w"}
    for result in results.values():
        assert result["status"] == "ok", result
        assert result["cold_start_s"] > 0 and result["rss_mib"] > 10
        (cell,) = result["cells"]
        assert cell["concurrency"] == 4 and cell["requests"] > 0 and cell["errors"] == 0
        assert cell["p50_ms"] <= cell["p99_ms"] <= cell["p999_ms"]
    table = (tmp_path / "results" / "peers.md").read_text()
    assert "| shopserve, embedded backend | default deployment (2 replicas) |" in table
    assert "(1.00×)" in table and "## Goals and losses" in table
    assert "Pinning:" in table


def test_a_peer_that_cannot_start_gets_a_row_saying_why(tmp_path: Path) -> None:
    # without --in-place this peer would get its own venv; here the harness's interpreter has
    # no PyTriton, so the peer fails to start and the run still finishes with its row
    if importlib.util.find_spec("pytriton") is not None:
        pytest.skip("PyTriton is installed here; the failure path needs a peer that cannot start")
    done = run_peers(tmp_path, "--peers", "pytriton", "--concurrency", "2", "--duration", "1",
                     "--warmup", "0")
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((tmp_path / "results" / "peers.json").read_text())
    row = next(r for r in data["results"] if r["peer"] == "pytriton")
    assert row["status"].startswith("failed: exited with code")
    assert "pytriton" in row["status"]
    assert "| NVIDIA PyTriton | dynamic batching" in (tmp_path / "results" / "peers.md").read_text()
