"""The shipped Prometheus rules and Grafana dashboard, checked with the real promtool."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(promtool is None, reason="promtool is not installed "
                                    "(Debian package prometheus)")


@needs_promtool
def test_rules_pass_promtool_check() -> None:
    out = subprocess.run([str(promtool), "check", "rules", "prometheus-rules.yaml"], cwd=DEPLOY,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


@needs_promtool
def test_rules_unit_tests_pass_with_promtool() -> None:
    out = subprocess.run([str(promtool), "test", "rules", "prometheus-rules.test.yaml"],
                         cwd=DEPLOY, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dashboard_is_grafana_json_with_a_query_per_panel() -> None:
    dash = json.loads((DEPLOY / "grafana-dashboard.json").read_text(encoding="utf-8"))
    assert dash["uid"] and dash["panels"]
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    for panel in dash["panels"]:
        assert panel["targets"] and all("shopserve_" in t["expr"] for t in panel["targets"])
