"""Tune results, kept per model version and machine type under ``<home>/tune/results``, and
``resolve_replicas``: what ``replicas: auto`` in a deployment file becomes on this machine.
"""

from __future__ import annotations

import os
import re
import subprocess
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
from pydantic import BaseModel, ConfigDict, ValidationError

from shopserve.config import home_settings
from shopserve.errors import IntegrityError, NotFoundError, SpecError
from shopserve.tune.candidates import Trial

if TYPE_CHECKING:
    from shopserve.serve.spec import DeploymentSpec

RESULTS_DIR = Path("tune") / "results"


class MachineType(BaseModel):
    """What a measurement holds for: the CPU model, its logical cores, the device (and GPU)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cpu: str
    cores: int
    device: str = "cpu"
    gpu: str | None = None

    @property
    def slug(self) -> str:
        text = f"{self.cpu}-{self.cores}c-{self.device}" + (f"-{self.gpu}" if self.gpu else "")
        return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:120]

    def __str__(self) -> str:
        gpu = f", {self.gpu}" if self.gpu else ""
        return f"{self.cpu}, {self.cores} cores, {self.device}{gpu}"


def this_machine(device: str = "cpu", cpuinfo: Path = Path("/proc/cpuinfo")) -> MachineType:
    cpu = "unknown CPU"
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model") and value.strip():
                cpu = value.strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        psutil.cpu_count(logical=True) or 1)
    return MachineType(cpu=cpu, cores=cores, device=device,
                       gpu=_gpu_name() if device == "cuda" else None)


def _gpu_name() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown GPU"
    return out.strip().splitlines()[0] if out.strip() else "unknown GPU"


class TuneTarget(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rps: float
    p99_ms: float
    headroom: float  # share of each machine's measured capacity kept free at the target rate
    rows_per_request: int


class TunePlan(BaseModel):
    """The chosen configuration and what the target needs of it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    trial: Trial
    machines: int
    replicas_per_machine: int
    headroom_at_target: float  # 1 - target / (machines * capacity)


class TuneResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    version: int
    ref: str  # as asked, e.g. ctr@production
    machine: MachineType
    target: TuneTarget
    plan: TunePlan
    trials: list[Trial]
    started_at: datetime
    elapsed_s: float
    budget_s: float


def results_root(home: Path | None = None) -> Path:
    return (home or home_settings().home_dir).expanduser() / RESULTS_DIR


def save_result(result: TuneResult, home: Path | None = None) -> Path:
    """Write atomically to ``<home>/tune/results/<model>/<version>/<machine>/<time>.json``."""
    folder = results_root(home) / result.model / str(result.version) / result.machine.slug
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{result.started_at.strftime('%Y%m%dT%H%M%S%fZ')}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(result.model_dump_json(indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return path


def latest_result(model: str, version: int, machine: MachineType,
                  home: Path | None = None) -> TuneResult | None:
    folder = results_root(home) / model / str(version) / machine.slug
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        return None
    try:
        return TuneResult.model_validate_json(files[-1].read_text(encoding="utf-8"))
    except (ValidationError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{files[-1]}: damaged tune result: {exc}") from exc


def resolve_replicas(model_ref: str, machine: MachineType | None = None, *,
                     home: Path | None = None, missing_ok: bool = False) -> int | None:
    """Replicas per machine from the latest tune result for ``model_ref``'s version on
    ``machine`` (this machine by default). No result: ``NotFoundError`` (``None`` if
    ``missing_ok``)."""
    from shopserve.registry import Registry

    machine = machine or this_machine()
    version = Registry.open(home).get(model_ref)
    result = latest_result(version.name, version.version, machine, home)
    if result is not None:
        return result.plan.replicas_per_machine
    if missing_ok:
        return None
    raise NotFoundError(
        f"replicas: auto: no tune result for {version.ref} ({model_ref}) on this machine type "
        f"({machine}); run `shopserve tune {model_ref} --target-rps N --p99-ms M` here first")


def load_tuned_deployment(path: Path, home: Path | None = None) -> DeploymentSpec:
    """A deployment file whose ``replicas: auto`` becomes the largest tuned answer over its
    models on this machine type; otherwise exactly ``serve.spec.load_deployment``."""
    from shopserve.config import read_yaml
    from shopserve.serve.spec import parse_deployment

    data = read_yaml(path)
    if isinstance(data, dict) and data.get("replicas") == "auto":
        models = data.get("models")
        refs = [m["ref"] for m in models or [] if isinstance(m, dict) and "ref" in m]
        if not refs:
            raise SpecError(f"{path}: replicas: auto needs models with a 'ref' to look up")
        where = home or (Path(data["home"]) if data.get("home") else None)
        data = {**data, "replicas": max(int(resolve_replicas(r, home=where) or 1) for r in refs)}
    return parse_deployment(data, source=str(path), text=path.read_text(encoding="utf-8"))
