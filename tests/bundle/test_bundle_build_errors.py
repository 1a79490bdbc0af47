"""``bundle build`` refusals a user meets before anything is written."""

from __future__ import annotations

from pathlib import Path

from conftest import run_cli

from shopserve.registry import Registry
from shopserve.types import ModelKind


def registry_home(tmp_path: Path) -> Path:
    reg = Registry.open(tmp_path / "home")
    art = tmp_path / "model.onnx"
    art.write_bytes(b"\x08\x07" * 50)
    reg.promote(reg.register("search", {"model.onnx": art}, ModelKind.GENERIC).ref, "production")
    return tmp_path / "home"


def test_dependency_missing_for_target_fails_at_build_naming_it(tmp_path: Path) -> None:
    home, empty = registry_home(tmp_path), tmp_path / "no-wheels"
    empty.mkdir()
    out = tmp_path / "shop.bundle.tar.gz"
    result = run_cli("bundle", "build", "--model", "search@production", "--home", str(home),
                     "--no-index", "--find-links", str(empty), "--cache-dir",
                     str(tmp_path / "cache"), "-o", str(out))
    assert result.returncode == 3, result.stderr
    assert "error: no wheel of " in result.stderr
    assert "for manylinux_2_28_x86_64, Python 3.11" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "home", "model.onnx",
                                                         "no-wheels"]


def test_bad_platform_python_and_refs_are_named(tmp_path: Path) -> None:
    home = registry_home(tmp_path)
    out = str(tmp_path / "b.tar.gz")
    base = ["bundle", "build", "--home", str(home), "-o", out]
    bad = run_cli(*base, "--model", "search@production", "--platform", "win_amd64")
    assert bad.returncode == 2 and "unknown platform 'win_amd64'" in bad.stderr
    bad = run_cli(*base, "--model", "search@production", "--python", "2.7")
    assert bad.returncode == 2 and "invalid --python '2.7'" in bad.stderr
    bad = run_cli(*base, "--model", "search@staging")
    assert bad.returncode == 3 and "staging" in bad.stderr
    deploy = tmp_path / "deploy.yaml"
    deploy.write_text("models:\n  - ref: ranker@production\n")
    bad = run_cli(*base, "--model", "search@production", "--deployment", str(deploy))
    assert bad.returncode in (2, 3) and "ranker" in bad.stderr
    assert not Path(out).exists()
