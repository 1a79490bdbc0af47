"""The Ray backend: the same deployment file as Ray Serve deployments behind the same HTTP API.

Each served version (stable, canary, shadow) is a Ray Serve deployment with the file's replicas
and batching (``@serve.batch``); a gateway deployment runs the usual ``DataPlane`` and routes
(caches, fallbacks, canary split, Open Inference Protocol), calling model replicas by handle.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shopserve.runtime import ray as ray_rt
from shopserve.serve.ray_replicas import Gateway, replica_class
from shopserve.serve.spec import DeploymentSpec, ModelSpec

APP_NAME = "shopserve"
GATEWAY = "gateway"


@dataclass(frozen=True)
class RaySettings:
    """Where the cluster is and what each model replica asks of it."""

    address: str | None = None  # auto, ray://HOST:PORT, HOST:PORT; None: Ray on this machine
    # CPUs each model replica reserves; by default the ONNX threads it runs with
    replica_cpus: float | None = field(default_factory=lambda: _env_float(
        "SHOPSERVE_RAY_REPLICA_CPUS"))
    app_name: str = APP_NAME


def _env_float(name: str) -> float | None:
    value = os.environ.get(name)
    return float(value) if value else None


def deployment_name(endpoint: str, role: str) -> str:
    return f"{endpoint}" if role == "stable" else f"{endpoint}-{role}"


def build_application(spec: DeploymentSpec, settings: RaySettings) -> Any:
    """The Ray Serve application of ``spec``: artifacts shipped from the registry, verified
    on each worker before a replica loads them."""
    from shopserve.registry import Registry

    registry = Registry.open(spec.home)
    cpus = settings.replica_cpus if settings.replica_cpus is not None else spec.server.threads
    handles: dict[str, dict[str, Any]] = {}
    for m in spec.models:
        handles[m.endpoint] = {}
        for role, ref in _roles(m):
            loaded = registry.load(ref)  # checked here too: a bad artifact never ships
            records = {n: (r.sha256, r.size) for n, r in loaded.meta.files.items()}
            shipped = ray_rt.ship_files(loaded.files, records)
            options = ray_rt.DeploymentOptions(
                name=deployment_name(m.endpoint, role), num_replicas=spec.replicas,
                num_cpus=cpus, max_ongoing_requests=max(64, m.batching.max_batch_size * 4))
            cls = replica_class(m.batching.max_batch_size, m.batching.max_queue_delay_ms / 1000)
            handles[m.endpoint][role] = ray_rt.bind(
                cls, options, m.endpoint, m.model_dump_json(), loaded.meta.model_dump_json(),
                shipped, spec.server.device, spec.server.threads)
    gateway = ray_rt.DeploymentOptions(name=GATEWAY, num_replicas=spec.replicas, num_cpus=0,
                                       max_ongoing_requests=1024)
    return ray_rt.bind(Gateway, gateway, spec.model_dump_json(), handles, ingress=True)


def _roles(m: ModelSpec) -> list[tuple[str, str]]:
    roles = [("stable", m.ref)]
    if m.canary:
        roles.append(("canary", m.canary.ref))
    if m.shadow:
        roles.append(("shadow", m.shadow.ref))
    return roles


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def deploy(spec: DeploymentSpec, settings: RaySettings) -> str:
    """Deploy ``spec`` on the cluster (already connected) and return its URL once all run."""
    port = spec.server.port or free_port(spec.server.host)
    app = build_application(spec, settings)
    ray_rt.run_app(app, settings.app_name, spec.server.host, port,
                   timeout_s=spec.health.startup_timeout_s * 5)
    return f"http://{spec.server.host}:{port}"


def serve_on_ray(spec: DeploymentSpec, settings: RaySettings,
                 on_ready: Callable[[str], None]) -> None:
    """Deploy, call ``on_ready(url)``, serve until SIGINT/SIGTERM, then remove the application
    (and stop Ray when this call started it)."""
    started = ray_rt.connect(settings.address)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        url = deploy(spec, settings)
        on_ready(url)
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        try:
            ray_rt.delete_app(settings.app_name)
            if started:
                ray_rt.shutdown_serve()
        finally:
            ray_rt.disconnect()
