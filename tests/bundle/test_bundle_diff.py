"""``bundle diff`` and the target-platform rules, on small hand-made bundles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli, small_files, small_manifest, write_bundle

from shopserve.bundle import compatible_platforms
from shopserve.errors import UsageError


def test_diff_names_changed_model_and_dependency(tmp_path: Path) -> None:
    old = write_bundle(tmp_path / "old.tar.gz", small_files())
    files = small_files(model_bytes=b"model-v2-retrained", numpy="2.1.0")
    new = write_bundle(tmp_path / "new.tar.gz", files, small_manifest(files, version=2))
    result = run_cli("bundle", "diff", str(old), str(new))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "models:"
    assert lines[1].startswith("  ~ search v1 (aliases production;")
    assert "-> v2 (aliases production;" in lines[1]
    assert "  ~ numpy 2.0.0 -> 2.1.0" in lines
    data = json.loads(run_cli("bundle", "diff", str(old), str(new), "--json").stdout)
    assert [d["name"] for d in data["dependencies"]] == ["numpy"]


def test_diff_of_identical_bundles_says_so(tmp_path: Path) -> None:
    a = write_bundle(tmp_path / "a.tar.gz", small_files())
    b = write_bundle(tmp_path / "b.tar.gz", small_files())
    result = run_cli("bundle", "diff", str(a), str(b))
    assert result.returncode == 0, result.stderr
    assert "install the same models and dependencies" in result.stdout


def test_diff_of_a_non_bundle_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not gzip at all")
    result = run_cli("bundle", "diff", str(junk), str(junk))
    assert result.returncode == 5
    assert "junk.tar.gz: truncated or not a bundle" in result.stderr


def test_manylinux_target_accepts_older_manylinux_levels() -> None:
    tags = compatible_platforms("manylinux_2_28_x86_64")
    assert tags[0] == "manylinux_2_28_x86_64"
    assert {"manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"} <= set(tags)
    assert "manylinux_2_31_x86_64" not in tags and "linux_x86_64" not in tags
    assert compatible_platforms("manylinux2014_aarch64")[0] == "manylinux_2_17_aarch64"
    assert "linux_x86_64" in compatible_platforms("manylinux_2_28_x86_64", local_builds=True)
    assert compatible_platforms("musllinux_1_2_x86_64")[-1] == "musllinux_1_0_x86_64"
    with pytest.raises(UsageError, match="unknown platform 'win_amd64'"):
        compatible_platforms("win_amd64")
