"""Checks a machine before a deployment: CPU features for int8, runtimes, GPUs, memory, disk,
ports, Redis and the registry. Each check says what it found; none of them changes anything.
"""

from __future__ import annotations

import enum
import shutil
import socket
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import psutil

from shopserve.config import HomeSettings
from shopserve.errors import ShopserveError


class CheckStatus(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: CheckStatus
    detail: str


@dataclass(frozen=True)
class DoctorSpec:
    """What the deployment needs from this machine."""

    settings: HomeSettings
    ports: Sequence[int] = (8000,)
    host: str = "127.0.0.1"
    min_free_memory_gib: float = 1.0
    min_free_disk_gib: float = 2.0
    cpuinfo: Path = Path("/proc/cpuinfo")
    extra: Sequence[Callable[[], CheckResult]] = field(default_factory=tuple)


INT8_FEATURES = {
    "avx2": "AVX2",
    "avx512_vnni": "AVX-512 VNNI",
    "avx512vnni": "AVX-512 VNNI",
    "avx_vnni": "AVX-VNNI",
    "amx_int8": "AMX-INT8",
}


def check_cpu(cpuinfo: Path) -> CheckResult:
    try:
        text = cpuinfo.read_text()
    except OSError as exc:
        return CheckResult("cpu", CheckStatus.WARN, f"cannot read {cpuinfo}: {exc.strerror}")
    flags: set[str] = set()
    model = "unknown CPU"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features") and not flags:
            flags = set(value.split())
        elif key.strip() == "model name" and model == "unknown CPU":
            model = value.strip()
    found = sorted({label for flag, label in INT8_FEATURES.items() if flag in flags})
    cores = psutil.cpu_count(logical=True) or 0
    if not found:
        return CheckResult("cpu", CheckStatus.WARN,
                           f"{model}, {cores} threads; no AVX2/VNNI/AMX: int8 gains will be small")
    vnni = any("VNNI" in f or "AMX" in f for f in found)
    hint = "" if vnni else " (no VNNI: int8 speed-up comes from AVX2 only)"
    return CheckResult("cpu", CheckStatus.OK, f"{model}, {cores} threads; {', '.join(found)}{hint}")


def check_onnxruntime() -> CheckResult:
    from shopserve.runtime.onnx import available_providers

    try:
        providers = available_providers()
    except ImportError as exc:
        return CheckResult("onnxruntime", CheckStatus.FAIL, f"not importable: {exc}")
    wanted = [p for p in providers if p in ("CPUExecutionProvider", "CUDAExecutionProvider")]
    status = CheckStatus.OK if "CPUExecutionProvider" in providers else CheckStatus.FAIL
    cuda = "CUDA available" if "CUDAExecutionProvider" in providers else "no CUDA provider"
    return CheckResult("onnxruntime", status, f"providers {', '.join(wanted)}; {cuda}")


def check_gpus() -> CheckResult:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return CheckResult("gpu", CheckStatus.OK, "no NVIDIA GPU found (CPU serving)")
    try:
        out = subprocess.run([smi, "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        return CheckResult("gpu", CheckStatus.WARN, f"nvidia-smi failed: {exc}")
    gpus = [line.strip() for line in out.splitlines() if line.strip()]
    return CheckResult("gpu", CheckStatus.OK, f"{len(gpus)} GPU(s): {'; '.join(gpus)}")


def check_memory(min_free_gib: float) -> CheckResult:
    mem = psutil.virtual_memory()
    free = mem.available / 2**30
    status = CheckStatus.OK if free >= min_free_gib else CheckStatus.FAIL
    return CheckResult("memory", status,
                       f"{free:.1f} GiB available of {mem.total / 2**30:.1f} GiB "
                       f"(need {min_free_gib:g})")


def check_disk(path: Path, min_free_gib: float) -> CheckResult:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    free = usage.free / 2**30
    status = CheckStatus.OK if free >= min_free_gib else CheckStatus.FAIL
    return CheckResult("disk", status, f"{free:.1f} GiB free at {probe} (need {min_free_gib:g})")


def check_port(host: str, port: int) -> CheckResult:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            return CheckResult(f"port {port}", CheckStatus.FAIL,
                               f"cannot bind {host}:{port}: {exc.strerror}")
    return CheckResult(f"port {port}", CheckStatus.OK, f"{host}:{port} is free")


def check_redis(url: str | None, timeout_s: float = 1.0) -> CheckResult:
    """PING over the Redis protocol; no client library needed for a reachability check."""
    if not url:
        return CheckResult("redis", CheckStatus.OK, "not configured (in-process cache only)")
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            reply = sock.recv(64)
    except OSError as exc:
        return CheckResult("redis", CheckStatus.FAIL, f"{host}:{port} unreachable: {exc}")
    if reply.startswith(b"+PONG") or reply.startswith(b"-NOAUTH"):
        return CheckResult("redis", CheckStatus.OK, f"{host}:{port} answers")
    return CheckResult("redis", CheckStatus.FAIL, f"{host}:{port} gave {reply[:40]!r}")


def check_registry(settings: HomeSettings) -> CheckResult:
    from shopserve.registry import Registry

    home = settings.home_dir
    if not (home / "registry.db").exists():
        return CheckResult("registry", CheckStatus.OK, f"{home}: empty (created on first use)")
    try:
        problems = Registry.open(home).check()
    except ShopserveError as exc:  # a damaged database refuses to open at all
        return CheckResult("registry", CheckStatus.FAIL, f"{home}: {exc}")
    if problems:
        return CheckResult("registry", CheckStatus.FAIL, f"{home}: " + "; ".join(problems))
    return CheckResult("registry", CheckStatus.OK, f"{home}: healthy")


def run_checks(spec: DoctorSpec) -> list[CheckResult]:
    results = [
        check_cpu(spec.cpuinfo),
        check_onnxruntime(),
        check_gpus(),
        check_memory(spec.min_free_memory_gib),
        check_disk(spec.settings.home_dir, spec.min_free_disk_gib),
    ]
    results += [check_port(spec.host, port) for port in spec.ports]
    results.append(check_redis(spec.settings.redis_url))
    results.append(check_registry(spec.settings))
    results += [extra() for extra in spec.extra]
    return results
