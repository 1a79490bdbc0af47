"""Shared helpers for bundle tests: hand-made bundles (for hostile variants) and the CLI."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
from datetime import UTC, datetime
from pathlib import Path

from shopserve.bundle.manifest import BundledModel, BundledWheel, BundleManifest
from shopserve.registry import FileRecord

SHOPSERVE = str(Path(sys.executable).with_name("shopserve"))
ROOT = "shopserve-bundle"


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SHOPSERVE, *args], capture_output=True, text=True, timeout=timeout)


def record(data: bytes) -> FileRecord:
    return FileRecord(sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def small_files(model_bytes: bytes = b"model-v1", numpy: str = "2.0.0") -> dict[str, bytes]:
    return {
        "install.py": b"print('install')\n",
        "models/search-1.tar.gz": model_bytes,
        "wheels/shopserve-0.1.0-py3-none-any.whl": b"shopserve wheel",
        f"wheels/numpy-{numpy}-cp311-cp311-manylinux_2_17_x86_64.whl": numpy.encode(),
    }


def small_manifest(files: dict[str, bytes], version: int = 1) -> BundleManifest:
    """A manifest for ``files`` as ``small_files`` lays them out."""
    wheels = [
        BundledWheel(file=rel, name=rel.split("/")[1].split("-")[0],
                     version=rel.split("/")[1].split("-")[1])
        for rel in files if rel.startswith("wheels/")
    ]
    model_rel = next(rel for rel in files if rel.startswith("models/"))
    return BundleManifest(
        created_at=datetime(2026, 11, 29, tzinfo=UTC), shopserve_version="0.1.0",
        platform="manylinux_2_28_x86_64", platforms=("manylinux_2_28_x86_64",), python="3.11",
        models=(BundledModel(name="search", version=version, requested=("search@production",),
                             aliases=("production",), file=model_rel,
                             artifacts={"model.onnx": record(files[model_rel])}),),
        shopserve_wheel="wheels/shopserve-0.1.0-py3-none-any.whl", wheels=tuple(wheels),
        files={rel: record(data) for rel, data in files.items()},
    )


def member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE,
           link: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data)
    return info, data


def write_bundle(
    path: Path,
    files: dict[str, bytes],
    manifest: BundleManifest | None = None,
    extra: list[tuple[tarfile.TarInfo, bytes]] | None = None,
    signature: bytes | None = None,
) -> Path:
    """Write a bundle the way ``bundle build`` lays it out, with optional hostile members."""
    raw = (manifest or small_manifest(files)).to_json()
    with tarfile.open(path, "w:gz") as tar:
        entries = [member(f"{ROOT}/manifest.json", raw)]
        if signature is not None:
            entries.append(member(f"{ROOT}/manifest.sig", signature))
        entries += [member(f"{ROOT}/{rel}", data) for rel, data in files.items()]
        for info, data in [*entries, *(extra or [])]:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path
