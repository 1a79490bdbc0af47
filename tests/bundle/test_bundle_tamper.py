"""``bundle verify`` and ``bundle install`` against changed, missing, extra and hostile members.

Each refusal must name the offending file, and an install must leave nothing behind.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from conftest import member, record, run_cli, small_files, small_manifest, write_bundle

from shopserve.bundle import Limits, verify_bundle
from shopserve.errors import IntegrityError

ROOT = "shopserve-bundle"


def test_intact_bundle_verifies(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "ok.tar.gz", small_files())
    result = run_cli("bundle", "verify", str(bundle))
    assert result.returncode == 0, result.stderr
    assert "4 files match the manifest; not signed" in result.stdout


def test_changed_byte_is_named(tmp_path: Path) -> None:
    files = small_files()
    manifest = small_manifest(files)
    files["models/search-1.tar.gz"] = b"model-v2"  # same size, one byte different
    bundle = write_bundle(tmp_path / "changed.tar.gz", files, manifest)
    result = run_cli("bundle", "verify", str(bundle))
    assert result.returncode == 5
    assert "changed file models/search-1.tar.gz (sha256 does not match)" in result.stderr


def test_extra_and_missing_files_are_named(tmp_path: Path) -> None:
    files = small_files()
    manifest = small_manifest(files)
    del files["install.py"]
    files["wheels/evil-1.0-py3-none-any.whl"] = b"not in the manifest"
    bundle = write_bundle(tmp_path / "extra.tar.gz", files, manifest)
    result = run_cli("bundle", "verify", str(bundle))
    assert result.returncode == 5
    assert "extra file wheels/evil-1.0-py3-none-any.whl" in result.stderr
    assert "missing file install.py" in result.stderr


@pytest.mark.parametrize(
    ("hostile", "says"),
    [
        (member(f"{ROOT}/../escape.txt", b"x"), "'shopserve-bundle/../escape.txt' leaves"),
        (member("/etc/cron.d/evil", b"x"), "'/etc/cron.d/evil' has an absolute path"),
        (member(f"{ROOT}/wheels/link", kind=tarfile.SYMTYPE, link="/etc/passwd"), "is a link"),
        (member(f"{ROOT}/hard", kind=tarfile.LNKTYPE, link=f"{ROOT}/install.py"), "is a link"),
        (member(f"{ROOT}/dev", kind=tarfile.CHRTYPE), "device, folder or special file"),
        (member(f"{ROOT}/fifo", kind=tarfile.FIFOTYPE), "device, folder or special file"),
        (member("elsewhere/file", b"x"), "outside the shopserve-bundle/ folder"),
    ],
    ids=["traversal", "absolute", "symlink", "hardlink", "device", "fifo", "outside-root"],
)
def test_hostile_member_refused_and_nothing_written(
    tmp_path: Path, hostile: tuple[tarfile.TarInfo, bytes], says: str
) -> None:
    bundle = write_bundle(tmp_path / "hostile.tar.gz", small_files(), extra=[hostile])
    verify = run_cli("bundle", "verify", str(bundle))
    assert verify.returncode == 5, verify.stderr
    assert says in verify.stderr
    prefix = tmp_path / "prefix"
    install = run_cli("bundle", "install", str(bundle), "--prefix", str(prefix))
    assert install.returncode == 5
    assert says in install.stderr
    assert not prefix.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hostile.tar.gz"]


def test_truncated_bundle_refused_before_anything_is_written(tmp_path: Path) -> None:
    files = small_files()
    files["wheels/big-1.0-py3-none-any.whl"] = bytes(range(256)) * 4000
    bundle = write_bundle(tmp_path / "full.tar.gz", files)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(bundle.read_bytes()[: bundle.stat().st_size // 2])
    prefix = tmp_path / "prefix"
    result = run_cli("bundle", "install", str(cut), "--prefix", str(prefix))
    assert result.returncode == 5
    assert "truncated" in result.stderr
    assert not prefix.exists()


def test_member_count_and_size_limits(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "ok.tar.gz", small_files())
    with pytest.raises(IntegrityError, match=r"declares 4 files of \d+ bytes, over the limits"):
        verify_bundle(bundle, limits=Limits(max_members=3))
    extra = [member(f"{ROOT}/junk{i}", b"j") for i in range(3)]
    many = write_bundle(tmp_path / "many.tar.gz", small_files(), extra=extra)
    with pytest.raises(IntegrityError, match="more than 6 members"):
        verify_bundle(many, limits=Limits(max_members=6))
    with pytest.raises(IntegrityError, match="over the limit"):
        verify_bundle(bundle, limits=Limits(max_member_bytes=10))
    with pytest.raises(IntegrityError, match="over the limits"):
        verify_bundle(bundle, limits=Limits(max_total_bytes=20))


def test_manifest_must_come_first_and_be_valid(tmp_path: Path) -> None:
    late = tmp_path / "late.tar.gz"
    with tarfile.open(late, "w:gz") as tar:
        info, _ = member(f"{ROOT}/install.py")
        tar.addfile(info)
    result = run_cli("bundle", "verify", str(late))
    assert result.returncode == 5
    assert "first member must be shopserve-bundle/manifest.json" in result.stderr
    files = small_files()
    bad_files = {"../x": record(files["install.py"])}
    broken = small_manifest(files).model_copy(update={"files": bad_files})
    bad = write_bundle(tmp_path / "bad.tar.gz", files, broken)
    assert "file name '../x' is not allowed" in run_cli("bundle", "verify", str(bad)).stderr


def test_failed_install_removes_what_it_made(tmp_path: Path) -> None:
    # Intact, but its "wheels" are not wheels: pip fails after the unpack and the venv.
    bundle = write_bundle(tmp_path / "fake.tar.gz", small_files())
    prefix = tmp_path / "prefix"
    result = run_cli("bundle", "install", str(bundle), "--prefix", str(prefix))
    assert result.returncode == 2
    assert "installing the bundled wheels failed" in result.stderr
    assert not prefix.exists()


def test_install_refuses_a_used_prefix(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "ok.tar.gz", small_files())
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    (prefix / "keep.txt").write_text("mine")
    result = run_cli("bundle", "install", str(bundle), "--prefix", str(prefix))
    assert result.returncode == 2
    assert "is not empty" in result.stderr
    assert [p.name for p in prefix.iterdir()] == ["keep.txt"]
