"""``bench/serve/search.py`` end to end in its quick mode (a tiny model, one short round), so
that a broken harness shows up in CI: optimize → registry → offline loops → both servers → wrk.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("wrk") is None,
                                reason="needs wrk (scripts/setup-system installs it)")


def test_quick_run_measures_offline_served_and_per_request(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "serve" / "search.py"), "--tiny", "--rounds", "1",
         "--seconds", "1", "--layouts", "1x1", "--batch-sizes", "1,4", "--connections", "8",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((tmp_path / "search-serve-tiny.json").read_text())
    assert data["gate"]["recipe"] == "int8-weight-only" and data["gate"]["ref"] == "search@2"
    layout = data["layouts"]["1x1"]
    assert set(layout["sweep"]) == {"1", "4"}
    (row,) = layout["rounds"]
    for name in ("served", "per_request"):
        assert row[name]["qps"] > 0 and row[name]["errors"] == 0, row
        assert 0 < row[name]["p50_ms"] <= row[name]["p99_ms"]
        assert row[name]["cpu_us"] > 0
    assert row["encoder"][0] > 0 and row["pipeline"][0] > 0
    assert data["best_layout"] == "1x1" and data["goals"]["vs_per_request"] > 0
    report = (tmp_path / "search-serve-tiny.md").read_text()
    assert "shares this" in report and "served ≥ 1.5 × per-request server" in report
