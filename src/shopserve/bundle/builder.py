"""``bundle build``: model exports, deployment file, wheels and install script in one archive.

Everything is staged in a temporary folder, checksummed into the manifest, optionally signed,
and written as ``.tar.gz`` (manifest first) under a temporary name that is renamed when complete.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import shutil
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from shopserve import __version__
from shopserve.bundle import install_script as script
from shopserve.bundle.manifest import BundledModel, BundleManifest
from shopserve.bundle.platforms import compatible_platforms, validate_python
from shopserve.bundle.signing import sign, signature_bytes
from shopserve.bundle.wheels import (
    WheelSpec,
    build_shopserve_wheel,
    describe_wheel,
    download_dependencies,
    source_tree,
)
from shopserve.errors import NotFoundError, SpecError, UsageError
from shopserve.registry import FileRecord, Registry, parse_ref

DEPLOYMENT = "deploy.yaml"


class BuildSpec(BaseModel):
    """What goes into a bundle and for which target."""

    model_config = ConfigDict(frozen=True)

    models: tuple[str, ...]
    output: Path
    platform: str = "manylinux_2_28_x86_64"
    python: str = "3.11"
    deployment: Path | None = None
    sign_key: Path | None = None
    home: Path | None = None  # registry home (default SHOPSERVE_HOME)
    cache_dir: Path = Path("~/.cache/shopserve/wheels")
    find_links: tuple[Path, ...] = ()
    refresh: bool = False
    no_index: bool = False  # wheels only from the cache and find_links
    shopserve_wheel: Path | None = None  # default: built from the source tree


class BuildReport(BaseModel):
    """What was built, how big it is and how long each step took."""

    model_config = ConfigDict(frozen=True)

    output: Path
    bytes: int
    seconds: float
    steps: dict[str, float]
    models: tuple[str, ...]
    wheels: int
    wheel_bytes: int
    signed: bool


def build_bundle(spec: BuildSpec) -> BuildReport:
    """Build the bundle ``spec.output``; nothing is left behind when a step fails."""
    _check(spec)
    start, steps = time.perf_counter(), {}
    with tempfile.TemporaryDirectory(prefix=".bundle-", dir=spec.output.parent) as tmp:
        stage = Path(tmp) / "stage"
        (stage / "wheels").mkdir(parents=True)
        t = time.perf_counter()
        models = _export_models(spec, stage)
        steps["export models"] = time.perf_counter() - t
        if spec.deployment is not None:
            _check_deployment(spec, spec.deployment, models)
            shutil.copyfile(spec.deployment, stage / DEPLOYMENT)
        t = time.perf_counter()
        wheel = _shopserve_wheel(spec, stage / "wheels")
        steps["build shopserve wheel"] = time.perf_counter() - t
        t = time.perf_counter()
        wspec = WheelSpec(platform=spec.platform, python=spec.python,
                          cache_dir=spec.cache_dir.expanduser(), find_links=spec.find_links,
                          refresh=spec.refresh, no_index=spec.no_index)
        for dep in download_dependencies(wheel, wspec, Path(tmp) / "deps"):
            shutil.move(dep, stage / "wheels" / dep.name)
        steps["fetch dependencies"] = time.perf_counter() - t
        shutil.copyfile(script.__file__, stage / "install.py")
        t = time.perf_counter()
        manifest = _manifest(spec, stage, models, wheel)
        _write_archive(stage, manifest, spec)
        steps["checksum and pack"] = time.perf_counter() - t
    wheels = manifest.wheels
    return BuildReport(
        output=spec.output, bytes=spec.output.stat().st_size,
        seconds=time.perf_counter() - start, steps=steps,
        models=tuple(m.ref for m in manifest.models), wheels=len(wheels),
        wheel_bytes=sum(manifest.files[w.file].size for w in wheels),
        signed=spec.sign_key is not None,
    )


def _check(spec: BuildSpec) -> None:
    if not spec.models:
        raise UsageError("give at least one --model")
    validate_python(spec.python)
    compatible_platforms(spec.platform)
    if not spec.output.name.endswith(".tar.gz"):
        raise UsageError(f"-o {spec.output}: a bundle file name ends in .tar.gz")
    if not spec.output.parent.is_dir():
        raise NotFoundError(f"-o {spec.output}: folder {spec.output.parent} does not exist")
    for path, what in [(spec.deployment, "--deployment"), (spec.sign_key, "--sign"),
                       (spec.shopserve_wheel, "--shopserve-wheel")]:
        if path is not None and not path.is_file():
            raise NotFoundError(f"{what} {path}: no such file")
    for link in spec.find_links:
        if not link.is_dir():
            raise NotFoundError(f"--find-links {link}: no such folder")


def _export_models(spec: BuildSpec, stage: Path) -> list[BundledModel]:
    reg = Registry.open(spec.home)
    (stage / "models").mkdir()
    by_ref: dict[str, BundledModel] = {}
    for ref in spec.models:
        mv = reg.get(ref)
        if mv.ref in by_ref:
            old = by_ref[mv.ref]
            by_ref[mv.ref] = old.model_copy(update={"requested": (*old.requested, ref)})
            continue
        rel = f"models/{mv.name}-{mv.version}.tar.gz"
        reg.export_version(mv.ref, stage / rel)
        by_ref[mv.ref] = BundledModel(name=mv.name, version=mv.version, requested=(ref,),
                                      aliases=mv.aliases, file=rel, artifacts=mv.files)
    return list(by_ref.values())


def _check_deployment(spec: BuildSpec, path: Path, models: list[BundledModel]) -> None:
    """The deployment must validate and name only versions that are in the bundle."""
    from shopserve.serve.spec import load_deployment

    deployment = load_deployment(path)
    reg = Registry.open(spec.home)
    bundled = {m.ref for m in models}
    for model in deployment.models:
        extra = [x.ref for x in (model.canary, model.shadow) if x is not None]
        for ref in (model.ref, *extra):
            if parse_ref(ref).version is not None:
                raise SpecError(
                    f"{path}: model {ref!r}: name bundled versions by alias (name@production); "
                    "the target registry numbers imported versions anew"
                )
            if reg.get(ref).ref not in bundled:
                raise SpecError(
                    f"{path}: model {ref!r} is not in the bundle; add --model {ref}"
                )


def _shopserve_wheel(spec: BuildSpec, wheels: Path) -> Path:
    if spec.shopserve_wheel is None:
        return build_shopserve_wheel(source_tree(), wheels)
    return Path(shutil.copy2(spec.shopserve_wheel, wheels / spec.shopserve_wheel.name))


def _record(path: Path) -> FileRecord:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return FileRecord(sha256=digest.hexdigest(), size=path.stat().st_size)


def _manifest(spec: BuildSpec, stage: Path, models: list[BundledModel],
              wheel: Path) -> BundleManifest:
    files = {p.relative_to(stage).as_posix(): _record(p)
             for p in sorted(stage.rglob("*")) if p.is_file()}
    wheels = [describe_wheel(stage / rel, rel) for rel in files if rel.startswith("wheels/")]
    return BundleManifest(
        created_at=datetime.now(UTC), shopserve_version=__version__, platform=spec.platform,
        platforms=compatible_platforms(spec.platform, local_builds=bool(spec.find_links)),
        python=spec.python, models=tuple(models),
        deployment=DEPLOYMENT if spec.deployment is not None else None,
        shopserve_wheel=f"wheels/{wheel.name}", wheels=tuple(wheels), files=files,
    )


def _write_archive(stage: Path, manifest: BundleManifest, spec: BuildSpec) -> None:
    raw = manifest.to_json()
    mtime = int(manifest.created_at.timestamp())
    temp = spec.output.with_name(f".{spec.output.name}.{secrets.token_hex(6)}.tmp")
    try:
        # Wheels are already compressed: a light gzip level costs little size, saves much time.
        with tarfile.open(temp, "w:gz", compresslevel=1, format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, script.MANIFEST, raw, mtime)
            if spec.sign_key is not None:
                _add_bytes(tar, script.SIGNATURE, signature_bytes(sign(raw, spec.sign_key)), mtime)
            for rel in manifest.files:
                with (stage / rel).open("rb") as handle:
                    tar.addfile(_info(rel, manifest.files[rel].size, mtime), handle)
        os.replace(temp, spec.output)
    finally:
        temp.unlink(missing_ok=True)


def _info(rel: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(f"{script.ROOT}/{rel}")
    info.size, info.mtime, info.mode = size, mtime, 0o644
    info.uname = info.gname = ""
    return info


def _add_bytes(tar: tarfile.TarFile, rel: str, data: bytes, mtime: int) -> None:
    tar.addfile(_info(rel, len(data), mtime), io.BytesIO(data))
