"""Starlette (constant or naive ONNX Runtime inline) and FastAPI peers, started by uvicorn.

``BENCH_MODE`` picks: ``const`` (the HTTP ceiling), ``naive`` (Starlette, ORT per request on
the event loop), ``fastapi`` (FastAPI with a pydantic request model, ORT inline).
"""

# no `from __future__ import annotations`: FastAPI reads the annotations at run time
import json
import os
from typing import Any


def create_app() -> Any:
    mode, name = os.environ["BENCH_MODE"], os.environ["BENCH_NAME"]
    if mode == "fastapi":
        return _fastapi(name, os.environ["BENCH_MODEL"])
    from ort_common import decode, dumps, encode, run, session
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    if mode == "const":
        payload = dumps({"model_name": name, "outputs": [
            {"name": os.environ["BENCH_OUTPUT"], "datatype": "FP32", "shape": [1], "data": [0.5]}]})

        async def const(request: Request) -> Response:
            await request.body()
            return Response(payload, media_type="application/json")

        return Starlette(routes=[Route(f"/v2/models/{name}/infer", const, methods=["POST"])])
    sess = session(os.environ["BENCH_MODEL"])

    async def naive(request: Request) -> Response:
        feeds = decode(json.loads(await request.body()))
        return Response(dumps(encode(name, run(sess, feeds))), media_type="application/json")

    return Starlette(routes=[Route(f"/v2/models/{name}/infer", naive, methods=["POST"])])


def _fastapi(name: str, model: str) -> Any:
    from fastapi import FastAPI
    from ort_common import decode, encode, run, session
    from pydantic import BaseModel

    class Tensor(BaseModel):
        name: str
        shape: list[int]
        datatype: str
        data: list[float | int]

    class InferRequest(BaseModel):
        inputs: list[Tensor]

    app = FastAPI()
    sess = session(model)

    @app.post(f"/v2/models/{name}/infer")
    async def infer(request: InferRequest) -> dict[str, Any]:
        return encode(name, run(sess, decode(request.model_dump())))

    return app
