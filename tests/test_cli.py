"""The CLI as a user meets it: the real ``shopserve`` executable."""

import subprocess
import sys
from pathlib import Path

SHOPSERVE = str(Path(sys.executable).with_name("shopserve"))


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SHOPSERVE, *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_capability() -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for group in ("models", "optimize", "serve", "batch", "bundle", "drill", "monitor", "tune",
                  "doctor", "quickstart"):
        assert group in result.stdout
