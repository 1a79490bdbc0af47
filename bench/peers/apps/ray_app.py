"""Ray Serve peer: 2 replicas running ONNX Runtime, optionally behind ``@serve.batch``.

Ray runs on 127.0.0.1 only, without its dashboard or usage reporting; the script serves until
it is killed.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import ray
from ort_common import decode, dumps, encode, run, run_many, session
from ray import serve
from starlette.requests import Request
from starlette.responses import Response


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
        self.sess = session(model)

    async def __call__(self, request: Request) -> Response:
        name = request.url.path.split("/")[3]
        feeds = decode(await request.json())
        return Response(dumps(encode(name, run(self.sess, feeds))),
                        media_type="application/json")


@serve.deployment(num_replicas=2)
class Batched:
    def __init__(self, model: str) -> None:
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
