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


def test_models_train_registers_and_promotes(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    result = run_cli("models", "--home", home, "train", "recommend", "--size", "small",
                     "--promote", "production")
    assert result.returncode == 0, result.stderr
    assert "registered recommend@1" in result.stdout
    assert "production → recommend@1" in result.stdout
    shown = run_cli("models", "--home", home, "show", "recommend@production")
    assert shown.returncode == 0 and "recall_at_20" in shown.stdout


def test_models_train_refuses_missing_data_folder(tmp_path: Path) -> None:
    result = run_cli("models", "--home", str(tmp_path), "train", "rank", "--data",
                     str(tmp_path / "nowhere"))
    assert result.returncode == 3
    assert "nowhere: no such folder" in result.stderr


def test_unknown_option_is_a_usage_error_not_a_traceback() -> None:
    result = run_cli("doctor", "--bogus")
    assert result.returncode == 2
    assert "No such option: --bogus" in result.stderr
    assert "Traceback" not in result.stderr
