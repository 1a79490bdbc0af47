"""The one adapter to Ray: connect, ship verified artifacts, Ray Serve apps, Ray Data, nodes.

Nothing else in shopserve imports ``ray``; the ``[ray]`` extra stays optional because every
function here imports it on first use and says how to install it when it is missing.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shopserve.errors import DependencyError, IntegrityError, UnavailableError, UsageError

SERVE_NAMESPACE = "serve"
INSTALL_HINT = "the Ray backend needs the [ray] extra: pip install 'shopserve[ray]'"


def require() -> Any:
    """The ``ray`` module, or a ``DependencyError`` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise DependencyError(INSTALL_HINT) from exc
    return ray


def available() -> bool:
    try:
        require()
    except DependencyError:
        return False
    return True


# A one-machine Ray that listens on loopback only. On Linux Ray takes as its node IP the address
# of the route to 8.8.8.8 (and binds it and ``*``) even when told 127.0.0.1; with this variable
# at 0 it keeps 127.0.0.1. Ray then refuses ``ray start --address`` (no second node), so this is
# for a Ray started on this machine, never for a real cluster.
CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOOPBACK_ENV = {CLUSTER_ENV: "0", "RAY_USAGE_STATS_ENABLED": "0"}


def connect(address: str | None) -> bool:
    """Join the cluster at ``address`` (``auto``, ``ray://HOST:PORT``, ``HOST:PORT``), or start a
    one-machine cluster on 127.0.0.1 only (no dashboard, no usage stats) when it is None. True
    when this call started Ray itself."""
    if address is None:
        os.environ.update(LOOPBACK_ENV)  # read by Ray when imported, and by every Ray process
    ray = require()
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address is None and not loopback_only():
        raise UsageError(f"Ray was imported before {CLUSTER_ENV}=0 was set, so a local Ray "
                         "would listen beyond 127.0.0.1; set it in the environment first")
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": "WARNING"}
    try:
        if address is None:
            ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UnavailableError(f"cannot reach the Ray cluster at {address or 'local'}: {exc}") \
            from exc
    return True


def loopback_only() -> bool:
    """True when a Ray started by this process keeps every socket on 127.0.0.1."""
    require()
    from ray._private import ray_constants

    return not ray_constants.ENABLE_RAY_CLUSTER


def keep_replica_on_loopback() -> None:
    """Run first in a replica's constructor: on a loopback-only Ray, Ray Serve's inter-deployment
    gRPC server (Ray 2.60 binds it to ``[::]`` whatever the node IP) binds 127.0.0.1 instead.

    Only where :data:`CLUSTER_ENV` is 0, i.e. Ray started on this machine by :func:`connect`
    (the variable reaches every Ray worker); on a cluster the other nodes must reach it.
    """
    if os.environ.get(CLUSTER_ENV) != "0":
        return
    try:
        from ray.serve._private import replica
    except ImportError:  # a Ray without that module has no such server to move
        return
    original = getattr(replica, "add_port_to_grpc_server", None)
    if original is None or getattr(original, "shopserve_loopback", False):
        return

    def add_port(server: Any, address: str) -> Any:
        if address.startswith("[::]:"):
            address = "127.0.0.1:" + address.removeprefix("[::]:")
        return original(server, address)

    add_port.shopserve_loopback = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = add_port  # type: ignore[attr-defined]


def disconnect() -> None:
    ray = require()
    if ray.is_initialized():
        ray.shutdown()


# ---------------------------------------------------------------- artifacts through the store


@dataclass(frozen=True)
class ShippedFile:
    ref: Any  # ObjectRef of the file's bytes
    sha256: str
    size: int


def ship_files(files: Mapping[str, Path],
               records: Mapping[str, tuple[str, int]] | None = None) -> dict[str, ShippedFile]:
    """Put each file's bytes in the object store with the checksum a worker must find.

    ``records`` are the registry's (sha256, size) per file; without them (a plain file) the
    checksum is taken here.
    """
    ray = require()
    shipped = {}
    for name, path in sorted(files.items()):
        data = Path(path).read_bytes()
        sha, size = (records or {}).get(name) or (hashlib.sha256(data).hexdigest(), len(data))
        shipped[name] = ShippedFile(ray.put(data), sha.removeprefix("sha256:"), size)
    return shipped


def fetch_files(shipped: Mapping[str, ShippedFile], cache: Path | None = None) -> dict[str, Path]:
    """The shipped files on this worker's disk, each checked against its sha256 and size first.

    Files are kept by checksum under ``cache``, so replicas on one node share them and a
    restarted replica does not fetch them again (it checks them again).
    """
    ray = require()
    root = cache or Path(os.environ.get("SHOPSERVE_RAY_CACHE",
                                        Path.home() / ".shopserve" / "ray-cache"))
    paths: dict[str, Path] = {}
    for name, item in shipped.items():
        folder = root / item.sha256
        path = folder / name
        if not (path.is_file() and _digest(path.read_bytes()) == (item.sha256, item.size)):
            data = bytes(ray.get(item.ref))
            if _digest(data) != (item.sha256, item.size):
                got = _digest(data)
                raise IntegrityError(f"artifact {name!r} arrived with sha256 {got[0][:12]}… and "
                                     f"{got[1]} bytes; the registry says {item.sha256[:12]}… and "
                                     f"{item.size} bytes")
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{name}.tmp-{os.getpid()}"
            tmp.write_bytes(data)
            os.replace(tmp, path)
        paths[name] = path
    return paths


def _digest(data: bytes) -> tuple[str, int]:
    return hashlib.sha256(data).hexdigest(), len(data)


# ---------------------------------------------------------------------------- Ray Serve


@dataclass(frozen=True)
class DeploymentOptions:
    name: str
    num_replicas: int = 1
    num_cpus: float = 1.0
    max_ongoing_requests: int = 64
    autoscaling: tuple[int, int] | None = None  # (min, max) replicas


def batched(max_batch_size: int, wait_s: float) -> Callable[[Any], Any]:
    """Ray Serve's request batching (``@serve.batch``) as a decorator for an async method."""
    from ray import serve

    return serve.batch(max_batch_size=max_batch_size,
                       batch_wait_timeout_s=wait_s)


def bind(cls: type, options: DeploymentOptions, *args: Any, ingress: bool = False) -> Any:
    """``cls`` as a Ray Serve deployment bound to its arguments (an application node).

    With ``ingress`` the class defines ``__serve_build_asgi_app__`` and answers HTTP.
    """
    from ray import serve

    if ingress:
        cls = serve.ingress()(cls)
    kwargs: dict[str, Any] = {
        "name": options.name, "max_ongoing_requests": options.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": options.num_cpus}}
    if options.autoscaling:
        low, high = options.autoscaling
        kwargs["autoscaling_config"] = {"min_replicas": low, "max_replicas": high,
                                        "initial_replicas": max(low, 1)}
    else:
        kwargs["num_replicas"] = options.num_replicas
    deployment: Any = serve.deployment(cls, **kwargs)
    return deployment.bind(*args)


def run_app(app: Any, name: str, host: str, port: int, timeout_s: float = 300.0) -> None:
    """Start Ray Serve's HTTP proxy on ``host:port`` (head node only) and deploy ``app``."""
    from ray import serve

    serve.start(http_options={"host": host, "port": port}, proxy_location="HeadOnly")
    try:
        serve.run(app, name=name, route_prefix="/", blocking=False)
    except Exception as exc:  # Ray raises its own types for a replica that fails to start
        raise UnavailableError(f"Ray Serve could not deploy {name!r}: {exc}") from exc
    wait_running(name, timeout_s)


def wait_running(name: str, timeout_s: float) -> dict[str, dict[str, int]]:
    """Wait until every deployment of app ``name`` runs all its replicas; their states."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = app_status(name)
        if last["status"] == "RUNNING" and all(
                set(states) == {"RUNNING"} for states in last["replicas"].values()):
            return dict(last["replicas"])
        if last["status"] in ("DEPLOY_FAILED", "UNHEALTHY") and time.monotonic() > deadline - 1:
            break
        time.sleep(0.25)
    raise UnavailableError(f"Ray Serve application {name!r} is not running after {timeout_s} s: "
                           f"{last}")


def app_status(name: str) -> dict[str, Any]:
    """``{"status", "message", "replicas": {deployment: {state: count}}}`` of one application."""
    from ray import serve

    apps = serve.status().applications
    if name not in apps:
        return {"status": "NOT_STARTED", "message": "", "replicas": {}}
    app = apps[name]
    return {"status": str(getattr(app.status, "value", app.status)), "message": app.message,
            "replicas": {d: {str(getattr(k, "value", k)): int(v)
                             for k, v in s.replica_states.items()}
                         for d, s in app.deployments.items()}}


def delete_app(name: str) -> None:
    from ray import serve

    serve.delete(name)


def shutdown_serve() -> None:
    from ray import serve

    serve.shutdown()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class ReplicaActor:
    name: str  # the actor's name in the serve namespace
    deployment: str
    node_id: str
    pid: int


def replica_actors(app: str) -> list[ReplicaActor]:
    """The live replica actors of application ``app``, with the node and process of each.

    Live: ALIVE in the GCS actor table and on a node Ray reports alive (an actor on a lost node
    can read ALIVE until the GCS has handled the node's death).
    """
    require()
    from ray._private import state  # the GCS actor table: no dashboard needed

    live = {n.node_id for n in nodes() if n.alive}
    out = []
    for info in state.actors().values():
        name = info.get("Name") or ""
        if info.get("State") != "ALIVE" or not name.startswith(f"SERVE_REPLICA::{app}#") \
                or str(info["Address"]["NodeID"]) not in live:
            continue
        out.append(ReplicaActor(name, name.split("#")[1], str(info["Address"]["NodeID"]),
                                int(info.get("Pid") or 0)))
    return sorted(out, key=lambda a: a.name)


def kill_actor(name: str) -> None:
    """Kill a Serve replica actor without restarting it (Ray Serve must notice and replace it)."""
    ray = require()
    ray.kill(ray.get_actor(name, namespace=SERVE_NAMESPACE), no_restart=True)


# ---------------------------------------------------------------------------- nodes


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    address: str
    alive: bool
    head: bool
    cpus: float


def nodes() -> list[NodeInfo]:
    ray = require()
    out = []
    for n in ray.nodes():
        res = n.get("Resources", {})
        out.append(NodeInfo(str(n["NodeID"]), str(n.get("NodeManagerAddress", "")),
                            bool(n.get("Alive")), "node:__internal_head__" in res,
                            float(res.get("CPU", 0.0))))
    return out


def kill_node(node_id: str) -> int:
    """Stop node ``node_id`` as a machine loss would: a task placed on it kills its raylet
    (and with it every worker there). Returns the raylet's pid."""
    ray = require()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if any(n.node_id == node_id and n.head for n in nodes()):
        raise UsageError("refusing to kill the head node: the cluster would be gone, not degraded")

    def stop_node() -> int:
        import threading

        import psutil

        # the raylet by its exact name: this worker's own title is ``ray::<task name>``
        proc: Any = psutil.Process(os.getpid())
        while proc is not None and proc.name() != "raylet":
            proc = proc.parent()
        if proc is None:
            raise RuntimeError("no raylet above this worker")
        pid = int(proc.pid)
        # after this task has answered: the answer must leave the node before it goes
        threading.Timer(0.5, _kill_pid, (pid,)).start()
        return pid

    task = ray.remote(num_cpus=0, max_retries=0)(stop_node).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False))
    return int(ray.get(task.remote(), timeout=60))


def _kill_pid(pid: int) -> None:
    import signal

    os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------------------- Ray Data


@dataclass(frozen=True)
class DataSettings:
    actors: int = 1
    num_cpus: float = 1.0


def map_items(items: list[dict[str, Any]], actor: type, args: tuple[Any, ...],
              settings: DataSettings) -> Iterator[dict[str, Any]]:
    """Stream ``items`` through a pool of ``actor`` instances with Ray Data (``map_batches``,
    one item per call, one instance per actor built from ``args``); rows as they finish."""
    ray = require()
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.execution_options.preserve_order = False
    dataset = ray.data.from_items(items, override_num_blocks=max(len(items), 1))
    mapped = dataset.map_batches(actor, fn_constructor_args=args, batch_size=1,
                                 batch_format="pyarrow", concurrency=settings.actors,
                                 num_cpus=settings.num_cpus)
    for batch in mapped.iter_batches(batch_size=1, batch_format="pyarrow"):
        yield from batch.to_pylist()
