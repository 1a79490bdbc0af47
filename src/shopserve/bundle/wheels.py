"""Wheels for a bundle: shopserve's own, built from source, and its runtime dependencies.

Dependencies come from ``pip download`` for the target platform and Python, through a local cache
so that a rebuild resolves offline first and only asks an index for what the cache lacks.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from email.parser import Parser
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from shopserve.bundle.manifest import BundledWheel
from shopserve.bundle.platforms import compatible_platforms
from shopserve.errors import NotFoundError, UsageError

_MISSING = re.compile(r"No matching distribution found for ([A-Za-z0-9_.\-\[\]]+)")
_SOURCE_FILES = ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md")


class WheelSpec(BaseModel):
    """Where and for what to fetch wheels."""

    model_config = ConfigDict(frozen=True)

    platform: str
    python: str
    cache_dir: Path
    find_links: tuple[Path, ...] = ()
    refresh: bool = False  # skip the offline attempt from the cache
    no_index: bool = False  # only the cache and find_links, never an index


def source_tree() -> Path:
    """The shopserve source tree this code runs from (the wheel is built from it)."""
    here = Path(__file__).resolve()
    for folder in here.parents:
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and 'name = "shopserve"' in pyproject.read_text(encoding="utf-8"):
            return folder
    raise NotFoundError(
        "cannot find shopserve's source tree (pyproject.toml) to build its wheel; "
        "pass --shopserve-wheel with a built shopserve wheel"
    )


def build_shopserve_wheel(source: Path, out_dir: Path) -> Path:
    """Build shopserve's wheel from a clean copy of ``source`` (the tree itself stays untouched)."""
    with tempfile.TemporaryDirectory(prefix="shopserve-wheel-") as tmp:
        copy = Path(tmp) / "src-copy"
        copy.mkdir()
        for name in _SOURCE_FILES:
            if (source / name).is_file():
                shutil.copy2(source / name, copy / name)
        shutil.copytree(source / "src" / "shopserve", copy / "src" / "shopserve",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
               "--no-index", "-q", "-w", str(out_dir), str(copy)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise UsageError(f"building the shopserve wheel failed:\n{proc.stderr[-2000:]}")
    wheels = sorted(out_dir.glob("shopserve-*.whl"))
    if len(wheels) != 1:
        raise UsageError(f"expected one shopserve wheel in {out_dir}, found {len(wheels)}")
    return wheels[0]


def download_dependencies(shopserve_wheel: Path, spec: WheelSpec, dest: Path) -> list[Path]:
    """Fetch every runtime dependency of ``shopserve_wheel`` for the target into ``dest``."""
    spec.cache_dir.mkdir(parents=True, exist_ok=True)
    proc = None
    if not spec.refresh or spec.no_index:
        proc = _pip_download(shopserve_wheel, spec, dest, offline=True)
        if proc.returncode == 0:
            return _fetched(dest, shopserve_wheel)
    if not spec.no_index:
        for stale in dest.glob("*"):
            stale.unlink()
        proc = _pip_download(shopserve_wheel, spec, dest, offline=False)
    assert proc is not None
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        if match := _MISSING.search(output):
            raise NotFoundError(
                f"no wheel of {match.group(1)} for {spec.platform}, Python {spec.python}: "
                "the target could not install it. Build one on a matching machine "
                "(pip wheel) and pass its folder with --find-links"
            )
        raise UsageError(f"downloading dependencies failed:\n{output[-2000:]}")
    fetched = _fetched(dest, shopserve_wheel)
    for wheel in fetched:
        if not (spec.cache_dir / wheel.name).exists():
            shutil.copy2(wheel, spec.cache_dir / wheel.name)
    return fetched


def _pip_download(
    wheel: Path, spec: WheelSpec, dest: Path, offline: bool
) -> subprocess.CompletedProcess[str]:
    platforms = compatible_platforms(spec.platform, local_builds=bool(spec.find_links))
    cmd = [sys.executable, "-m", "pip", "download", "-d", str(dest), "--only-binary=:all:",
           "--python-version", spec.python, "--implementation", "cp",
           "--find-links", str(spec.cache_dir)]
    for tag in platforms:
        cmd += ["--platform", tag]
    for link in spec.find_links:
        cmd += ["--find-links", str(link)]
    if offline:
        cmd.append("--no-index")
    cmd.append(str(wheel))
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def _fetched(dest: Path, shopserve_wheel: Path) -> list[Path]:
    wheels = sorted(p for p in dest.glob("*.whl") if p.name != shopserve_wheel.name)
    others = sorted(p.name for p in dest.iterdir() if p.suffix != ".whl")
    if others:
        raise UsageError(f"pip fetched files that are not wheels: {', '.join(others)}")
    return wheels


def describe_wheel(path: Path, rel: str) -> BundledWheel:
    """Name and version of a wheel, read from its METADATA."""
    try:
        with zipfile.ZipFile(path) as zf:
            meta_name = next(n for n in zf.namelist()
                             if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
            meta = Parser().parsestr(zf.read(meta_name).decode("utf-8"))
    except (zipfile.BadZipFile, StopIteration, UnicodeDecodeError, OSError) as exc:
        raise UsageError(f"{path.name}: not a readable wheel ({exc})") from exc
    return BundledWheel(file=rel, name=str(meta["Name"]).lower().replace("_", "-"),
                        version=str(meta["Version"]))
