"""Ray Serve peer: 2 replicas running ONNX Runtime, optionally behind ``@serve.batch``.

Ray runs on 127.0.0.1 only, without its dashboard or usage reporting; the script serves until
it is killed. Loopback only takes RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (set here before Ray is
imported; the runner sets it too), which keeps Ray's node IP at 127.0.0.1, and each replica
moving Ray Serve's inter-deployment gRPC server off ``[::]``.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

# before Ray is imported: Ray reads these then
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from ort_common import decode, dumps, encode, run, run_many, session
from starlette.requests import Request
from starlette.responses import Response

import ray
from ray import serve


def loopback_grpc() -> None:
    """In a replica, before Ray Serve starts its inter-deployment gRPC server (Ray 2.60 binds
    it to ``[::]``): bind 127.0.0.1 instead, as shopserve's own replicas do."""
    try:
        from ray.serve._private import replica
    except ImportError:
        return
    original = getattr(replica, "add_port_to_grpc_server", None)
    if original is None or getattr(original, "loopback", False):
        return

    def add_port(server: Any, address: str) -> Any:
        if address.startswith("[::]:"):
            address = "127.0.0.1:" + address.removeprefix("[::]:")
        return original(server, address)

    add_port.loopback = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = add_port


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--temp-dir", required=True)
    ap.add_argument("--batch", action="store_true")
    args = ap.parse_args()
    ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=2,
             _temp_dir=args.temp_dir)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    app = (Batched if args.batch else Plain).bind(args.model)  # type: ignore[attr-defined]
    serve.run(app, route_prefix="/")
    while True:
        time.sleep(3600)


@serve.deployment(num_replicas=2)
class Plain:
    def __init__(self, model: str) -> None:
        loopback_grpc()
        self.sess = session(model)

    async def __call__(self, request: Request) -> Response:
        name = request.url.path.split("/")[3]
        feeds = decode(await request.json())
        return Response(dumps(encode(name, run(self.sess, feeds))),
                        media_type="application/json")


@serve.deployment(num_replicas=2)
class Batched:
    def __init__(self, model: str) -> None:
        loopback_grpc()
        self.sess = session(model)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.001)
    async def infer(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return run_many(self.sess, requests)

    async def __call__(self, request: Request) -> Response:
        name = request.url.path.split("/")[3]
        out = await self.infer(decode(await request.json()))
        return Response(dumps(encode(name, out)), media_type="application/json")


if __name__ == "__main__":
    main()
