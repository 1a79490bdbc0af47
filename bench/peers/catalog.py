"""Every peer the harness knows: its virtual environment, its packages and how it starts.

A peer's server code lives in ``apps/`` and runs inside the peer's own environment, so it may
import only that peer's packages (plus numpy and ONNX Runtime), never shopserve.
"""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

APPS = Path(__file__).resolve().parent / "apps"


class BodyFormat(enum.StrEnum):
    OIP = "oip"  # Open Inference Protocol JSON: {"inputs": [{name, shape, datatype, data}]}
    ITEMS = "items"  # {"items": [<an OIP request>]}: a list API that a batcher can merge


@dataclass(frozen=True)
class LaunchContext:
    """What a peer's start command needs: its interpreter, model, ports and a scratch folder."""

    python: Path
    model_name: str
    model_path: Path  # the ONNX graph
    registry_ref: str  # the same graph in shopserve's registry
    registry_home: Path
    output_name: str  # what a good answer contains
    port: int
    extra_ports: tuple[int, int, int]  # gRPC, metrics, management: whatever the peer needs
    work_dir: Path

    def tool(self, name: str) -> str:
        """An executable installed next to the peer's interpreter."""
        return str(self.python.with_name(name))


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    path: str  # where requests go, e.g. /v2/models/ctr/infer
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None


@dataclass(frozen=True)
class PeerSpec:
    name: str  # CLI name, e.g. ray-batch
    label: str  # what the table calls it
    settings: str  # the settings used, as the table states them
    env: str | None  # virtual environment under bench/.peers; None: the harness's own
    requirements: tuple[str, ...]
    launch: Callable[[LaunchContext], Launch]
    body: BodyFormat = BodyFormat.OIP
    batches: bool = False  # merges concurrent requests into one model call
    ceiling: bool = False  # answers a constant: the HTTP ceiling, not a model server
    startup_timeout_s: float = 120.0
    base_python: str | None = None  # the interpreter its venv is made from (default: ours)


ORT = ("onnxruntime", "numpy")
TORCHSERVE = ("torchserve", "torch-model-archiver", "torch==2.13.0", "pyyaml", *ORT)
ASGI = ("starlette", "uvicorn[standard]", "fastapi", *ORT)


def _uvicorn(mode: str, workers: int) -> Callable[[LaunchContext], Launch]:
    def launch(ctx: LaunchContext) -> Launch:
        argv = [str(ctx.python), "-m", "uvicorn", "asgi_app:create_app", "--factory",
                "--app-dir", str(APPS), "--host", "127.0.0.1", "--port", str(ctx.port),
                "--workers", str(workers), "--loop", "uvloop", "--http", "httptools",
                "--no-access-log", "--log-level", "warning"]
        env = {"BENCH_MODE": mode, "BENCH_MODEL": str(ctx.model_path),
               "BENCH_NAME": ctx.model_name, "BENCH_OUTPUT": ctx.output_name}
        return Launch(argv, f"/v2/models/{ctx.model_name}/infer", env)

    return launch


def _shopserve(ctx: LaunchContext) -> Launch:
    exe = Path(sys.executable).with_name("shopserve")
    cli = [str(exe)] if exe.exists() else [sys.executable, "-m", "shopserve.cli.main"]
    argv = [*cli, "serve", "--model", ctx.registry_ref, "--host", "127.0.0.1",
            "--port", str(ctx.port), "--home", str(ctx.registry_home)]
    return Launch(argv, f"/v2/models/{ctx.model_name}/infer")


def _ray(batch: bool) -> Callable[[LaunchContext], Launch]:
    def launch(ctx: LaunchContext) -> Launch:
        argv = [str(ctx.python), str(APPS / "ray_app.py"), "--model", str(ctx.model_path),
                "--port", str(ctx.port), "--temp-dir", f"/tmp/ray-bench-{ctx.port}"]
        # a one-machine Ray on 127.0.0.1 only (see ray_app.py)
        env = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0",
               "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        return Launch(argv + (["--batch"] if batch else []),
                      f"/v2/models/{ctx.model_name}/infer", env)

    return launch


def _bento(batch: bool) -> Callable[[LaunchContext], Launch]:
    def launch(ctx: LaunchContext) -> Launch:
        service = "bento_app:Batched" if batch else "bento_app:Plain"
        argv = [ctx.tool("bentoml"), "serve", service, "--working-dir", str(APPS),
                "--host", "127.0.0.1", "--port", str(ctx.port)]
        env = {"BENCH_MODEL": str(ctx.model_path), "BENTOML_HOME": str(ctx.work_dir / "bento"),
               "BENTOML_DO_NOT_TRACK": "True"}
        return Launch(argv, "/infer", env)

    return launch


def _mlserver(ctx: LaunchContext) -> Launch:
    root = ctx.work_dir / "mlserver"
    model_dir = root / ctx.model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    grpc, metrics, _ = ctx.extra_ports
    (root / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": ctx.port, "grpc_port": grpc,
        "metrics_port": metrics}))
    (model_dir / "model-settings.json").write_text(json.dumps({
        "name": ctx.model_name, "implementation": "ort_runtime.OrtRuntime",
        "parameters": {"uri": str(ctx.model_path)}}))
    (model_dir / "ort_runtime.py").write_text((APPS / "mlserver_runtime.py").read_text())
    return Launch([ctx.tool("mlserver"), "start", str(root)],
                  f"/v2/models/{ctx.model_name}/infer", cwd=model_dir)


def _pytriton(ctx: LaunchContext) -> Launch:
    grpc, metrics, _ = ctx.extra_ports
    argv = [str(ctx.python), str(APPS / "pytriton_app.py"), "--model", str(ctx.model_path),
            "--name", ctx.model_name, "--port", str(ctx.port), "--grpc-port", str(grpc),
            "--metrics-port", str(metrics)]
    return Launch(argv, f"/v2/models/{ctx.model_name}/infer")


def _torchserve(batch: bool) -> Callable[[LaunchContext], Launch]:
    def launch(ctx: LaunchContext) -> Launch:
        argv = [str(ctx.python), str(APPS / "torchserve_app.py"), "--model", str(ctx.model_path),
                "--name", ctx.model_name, "--port", str(ctx.port),
                "--management-port", str(ctx.extra_ports[2]),
                "--metrics-port", str(ctx.extra_ports[1]), "--work-dir", str(ctx.work_dir)]
        path = str(ctx.python.parent)
        return Launch(argv + (["--batch"] if batch else []), f"/predictions/{ctx.model_name}",
                      {"PATH": f"{path}:/usr/bin:/bin"}, cwd=ctx.work_dir)

    return launch


PEERS: tuple[PeerSpec, ...] = (
    PeerSpec("starlette-const-1w", "Starlette+uvicorn, constant answer", "1 worker",
             "asgi", ASGI, _uvicorn("const", 1), ceiling=True),
    PeerSpec("starlette-const-2w", "Starlette+uvicorn, constant answer", "2 workers",
             "asgi", ASGI, _uvicorn("const", 2), ceiling=True),
    PeerSpec("starlette-ort-1w", "Starlette+uvicorn, ORT inline (naive)", "1 worker",
             "asgi", ASGI, _uvicorn("naive", 1)),
    PeerSpec("starlette-ort-2w", "Starlette+uvicorn, ORT inline (naive)", "2 workers",
             "asgi", ASGI, _uvicorn("naive", 2)),
    PeerSpec("fastapi-ort", "FastAPI+uvicorn, ORT inline", "2 workers, pydantic request model",
             "asgi", ASGI, _uvicorn("fastapi", 2)),
    PeerSpec("ray-serve", "Ray Serve", "2 replicas", "ray", ("ray[serve]", *ORT), _ray(False),
             startup_timeout_s=240),
    PeerSpec("ray-serve-batch", "Ray Serve, @serve.batch", "2 replicas, batch ≤32, wait 1 ms",
             "ray", ("ray[serve]", *ORT), _ray(True), batches=True, startup_timeout_s=240),
    PeerSpec("bentoml", "BentoML", "2 workers", "bentoml", ("bentoml", *ORT), _bento(False),
             startup_timeout_s=180),
    PeerSpec("bentoml-batch", "BentoML, adaptive batching",
             "2 workers, batch ≤32, default max latency",
             "bentoml", ("bentoml", *ORT), _bento(True), body=BodyFormat.ITEMS, batches=True,
             startup_timeout_s=180),
    # mlserver 1.7's worker pool calls asyncio.get_event_loop() in a fresh process, which
    # uvloop 0.22 and later refuse: pinned so that its default (parallel) settings work
    PeerSpec("mlserver", "Seldon MLServer (Open Inference Protocol)", "defaults",
             "mlserver", ("mlserver", "uvloop<0.22", *ORT), _mlserver, startup_timeout_s=180),
    # Triton's Python stub links the system libpython3.11; a venv from another 3.11 build
    # mixes two patch releases (its stdlib, their C core) and fails to start the model
    PeerSpec("pytriton", "NVIDIA PyTriton", "dynamic batching ≤64, 1 model instance",
             "pytriton-system-python", ("nvidia-pytriton", *ORT), _pytriton, batches=True,
             startup_timeout_s=180, base_python="/usr/bin/python3.11"),
    PeerSpec("torchserve", "TorchServe", "2 workers", "torchserve",
             TORCHSERVE, _torchserve(False),
             startup_timeout_s=240),
    PeerSpec("torchserve-batch", "TorchServe, batching", "2 workers, batch ≤32, delay 1 ms",
             "torchserve", TORCHSERVE, _torchserve(True), batches=True, startup_timeout_s=240),
    PeerSpec("shopserve", "shopserve, embedded backend", "default deployment (2 replicas)",
             None, (), _shopserve, batches=True),
)

SHOPSERVE = "shopserve"


def find_peers(names: list[str] | None) -> list[PeerSpec]:
    """The peers named (all when ``names`` is empty), shopserve always among them."""
    if not names:
        return list(PEERS)
    known = {p.name: p for p in PEERS}
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise SystemExit(f"unknown peer(s) {unknown}; known: {sorted(known)}")
    chosen = set(names) | {SHOPSERVE}
    return [p for p in PEERS if p.name in chosen]
