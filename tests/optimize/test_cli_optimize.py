"""`shopserve optimize` through the real executable, with SHOPSERVE_HOME in a temp folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from shopserve.registry import Registry
from shopserve.types import VersionStatus

SHOPSERVE = str(Path(sys.executable).with_name("shopserve"))


def run_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHOPSERVE_HOME": str(home)}
    return subprocess.run([SHOPSERVE, "optimize", *args, "--time-per-batch", "0.02"],
                          capture_output=True, text=True, timeout=180, env=env)


def test_cli_optimizes_registers_promotes_and_writes_reports(
    registry: Registry, tmp_path: Path
) -> None:
    out = tmp_path / "reports"
    result = run_cli(tmp_path / "home", "ctr@1", "--recipe", "int8-per-channel",
                     "--max-auc-drop", "0.01", "--promote", "production",
                     "--report-dir", str(out))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["variant", "version", "status", "size_kb"]
    assert lines[2].split()[:3] == ["fp32", "ctr@1", "parent"]
    assert lines[3].split()[:3] == ["int8-per-channel", "ctr@2", "ready"]
    assert "promoted: production → ctr@2" in result.stdout
    assert registry.get("ctr@production").ref == "ctr@2"
    assert registry.get("ctr@2").parent == "ctr@1"
    report = json.loads((out / "optimize-ctr-1.json").read_text())
    assert report["promoted"] == "production → ctr@2"
    assert (out / "optimize-ctr-1.md").read_text().startswith("# Optimize report for ctr@1")


def test_cli_gate_failure_exits_6_with_reason_and_no_alias(
    registry: Registry, tmp_path: Path
) -> None:
    result = run_cli(tmp_path / "home", "ctr@1", "--recipe", "prune-unstructured:sparsity=0.99",
                     "--promote", "production")
    assert result.returncode == 6, result.stderr
    assert "rejected prune-unstructured: " in result.stdout
    assert "top-k agreement with the parent" in result.stdout
    assert "no variant of ctr@1 passed the quality gate" in result.stderr
    assert "prune-unstructured (ctr@2)" in result.stderr
    assert [v.status for v in registry.list_versions("ctr")] == [
        VersionStatus.READY, VersionStatus.REJECTED]
    assert all(not v.aliases for v in registry.list_versions("ctr"))


def test_cli_bad_input_exit_codes(registry: Registry, tmp_path: Path) -> None:
    home = tmp_path / "home"
    unknown = run_cli(home, "ctr@9", "--recipe", "int8-dynamic")
    assert unknown.returncode == 3 and "has no version 9" in unknown.stderr
    bad = run_cli(home, "ctr@1", "--recipe", "int8-turbo")
    assert bad.returncode == 2 and "unknown recipe 'int8-turbo'" in bad.stderr
    none = run_cli(home, "ctr@1")
    assert none.returncode == 2 and "give at least one --recipe" in none.stderr
    assert [v.ref for v in registry.list_versions("ctr")] == ["ctr@1"]
