"""Drill files and the CLI without a live service: line-precise errors, plan and list through
the real executable, and the catalogue shipped as package data (also inside a wheel)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from drill_helpers import REPO_DRILLS, SHOPSERVE

from shopserve.drill import load_drill
from shopserve.drill.catalogue import drills_dir
from shopserve.errors import SpecError

BAD = """\
title: a drill with mistakes
steady-state-hypothesis:
  title: ready
  probes:
    - type: probe
      name: ready
      provider: {type: http, url: /v2/health/ready}
extensions:
  - name: shopserve
    load: {rate: 40, duration_s: 5}
    faults:
      - {type: replica-crash, start_s: 1}
      - type: zone-loss
        duration_s: -1
        zone: a
"""


def test_bad_drill_file_errors_name_the_field_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD, encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_drill(path)
    message = str(info.value)
    assert "steady-state probes need a 'tolerance'" in message and "(line 3)" in message
    assert "extensions.0.faults.1.duration_s (line 14)" in message
    done = subprocess.run([SHOPSERVE, "drill", "plan", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2 and "(line 14)" in done.stderr


def test_plan_and_list_through_the_executable() -> None:
    listed = subprocess.run([SHOPSERVE, "drill", "list"], capture_output=True, text=True,
                            timeout=60, check=True).stdout
    names = sorted(p.stem for p in drills_dir().glob("*.yaml"))
    assert [line.split()[0] for line in listed.splitlines()] == names
    plan = subprocess.run([SHOPSERVE, "drill", "plan", "replica-hang", "--target",
                           "http://127.0.0.1:8000"], capture_output=True, text=True, timeout=60,
                          check=True).stdout
    assert "target: http://127.0.0.1:8000" in plan
    assert "freeze (SIGSTOP) one replica" in plan and "SIGCONT" in plan
    missing = subprocess.run([SHOPSERVE, "drill", "run", "no-such-drill", "--target",
                              "http://127.0.0.1:9"], capture_output=True, text=True, timeout=60,
                             check=False)
    assert missing.returncode == 2 and "did not start" in missing.stderr


def test_repo_drills_are_the_shipped_catalogue() -> None:
    shipped = {p.name: p.read_bytes() for p in drills_dir().glob("*.yaml")}
    assert shipped and {p.name: p.read_bytes() for p in REPO_DRILLS.glob("*.yaml")} == shipped


def test_the_catalogue_is_inside_the_wheel(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    src = tmp_path / "src"
    shutil.copytree(root / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, tmp_path / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist"), str(tmp_path)], check=True, timeout=300,
                   capture_output=True)
    wheel = next((tmp_path / "dist").glob("shopserve-*.whl"))
    inside = set(zipfile.ZipFile(wheel).namelist())
    for path in drills_dir().glob("*.yaml"):
        assert f"shopserve/drill/catalog/{path.name}" in inside


def test_journals_go_to_the_home_where_the_dashboard_reads_them(tmp_path: Path) -> None:
    from shopserve.cli.drill import default_journal

    path = default_journal(tmp_path / "home", "drills/replica-crash.yaml")
    assert path.parent == tmp_path / "home" / "drills" and path.parent.is_dir()
    assert path.name.startswith("replica-crash-") and path.suffix == ".json"
