"""Open Inference Protocol, health, metrics, OpenAPI and admin routes of a replica.

Admin calls are checked here (constant-time token compare) and forwarded to the supervisor,
which owns the replicas and so is the only one that can act on all of them.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Scope

from shopserve.errors import AuthError, NotFoundError, UnavailableError
from shopserve.serve import metrics, v2
from shopserve.serve.dataplane import DataPlane
from shopserve.serve.http import LaneRoute, RawHandler, guarded, json_response, read_body
from shopserve.serve.openapi import openapi_document

CONTROL_ENV = "SHOPSERVE_CONTROL_URL"
INFER_ROUTE = "/v2/models/{name}/infer"  # the route's name in metrics, as Starlette's path
_BINARY_HEADER = v2.HEADER.encode()
ADMIN_ACTIONS = ("deploy", "canary", "rollback", "drain", "status")


class ProtocolRoutes:
    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self.limit = plane.spec.server.max_body_bytes
        self.control_url = os.environ.get(CONTROL_ENV)

    async def live(self, request: Request) -> Response:
        return json_response({"live": True})

    async def ready(self, request: Request) -> Response:
        if not self.plane.ready:
            raise UnavailableError("warming up", retry_after_s=1)
        return json_response({"ready": True})

    async def server_metadata(self, request: Request) -> Response:
        return json_response({"name": "shopserve", "version": _version(),
                              "extensions": ["binary_tensor_data"]})

    async def model_metadata(self, request: Request) -> Response:
        endpoint = self.plane.endpoint(request.path_params["name"])
        runner = endpoint.version(request.path_params.get("version"))
        return json_response(v2.model_metadata(endpoint.name, runner.model.version,
                                               runner.model.signature))

    async def model_ready(self, request: Request) -> Response:
        endpoint = self.plane.endpoint(request.path_params["name"])
        endpoint.version(request.path_params.get("version"))
        if not self.plane.ready:
            raise UnavailableError("warming up", retry_after_s=1)
        return json_response({"name": endpoint.name, "ready": True})

    async def infer(self, request: Request) -> Response:
        body = await read_body(request, self.limit)
        return await self._infer(request.path_params["name"], request.path_params.get("version"),
                                 request.headers.get(v2.HEADER), body)

    async def _infer(self, name: str, version: str | None, binary_header: str | None,
                     body: bytes) -> Response:
        inputs, wanted, request_id = v2.decode_request(body, binary_header)
        model, outputs = await self.plane.infer(name, version, inputs)
        payload, headers = v2.encode_response(name, model.version, outputs, wanted, request_id)
        media = "application/octet-stream" if headers else "application/json"
        return Response(payload, media_type=media, headers=headers)

    def lane_routes(self) -> dict[str, LaneRoute]:
        """``POST /v2/models/{name}/infer`` of every served model, for the fast lane."""
        def infer(name: str) -> RawHandler:
            def run(scope: Scope, body: bytes) -> Awaitable[Response]:
                binary = None
                for key, value in scope["headers"]:
                    if key == _BINARY_HEADER:
                        binary = value.decode("latin-1")
                return self._infer(name, None, binary, body)
            return run

        return {f"/v2/models/{name}/infer": LaneRoute(INFER_ROUTE, name, infer(name))
                for name in self.plane.endpoints}

    async def metrics(self, request: Request) -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    async def openapi(self, request: Request) -> Response:
        return json_response(openapi_document(sorted(self.plane.endpoints)))

    async def admin(self, request: Request) -> Response:
        token = self.plane.spec.server.admin_token
        if not token or not self.control_url:
            raise NotFoundError("the admin API is off: no admin_token in the deployment")
        if self.plane.spec.server.admin_port is not None:
            raise NotFoundError("the admin API is served on its own address (admin_port), "
                                "not on the data port")
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise AuthError("missing or wrong admin token (Authorization: Bearer <token>)")
        action = request.path_params["action"]
        if action not in ADMIN_ACTIONS:
            raise NotFoundError(f"unknown admin action {action!r}; expected {ADMIN_ACTIONS}")
        body = await read_body(request, 64 * 1024) if request.method == "POST" else b""
        try:
            async with httpx.AsyncClient(timeout=120) as client:
                r = await client.request(request.method, f"{self.control_url}/{action}",
                                         content=body)
        except httpx.HTTPError as exc:
            raise UnavailableError(f"supervisor did not answer: {exc}", retry_after_s=1) from exc
        return Response(r.content, status_code=r.status_code, media_type="application/json")

    def routes(self) -> list[Route]:
        g = guarded
        m = "/v2/models/{name}"
        mv = m + "/versions/{version}"
        table: list[tuple[str, Any, list[str]]] = [
            ("/v2/health/live", self.live, ["GET"]), ("/v2/health/ready", self.ready, ["GET"]),
            ("/v2", self.server_metadata, ["GET"]), (m, self.model_metadata, ["GET"]),
            (mv, self.model_metadata, ["GET"]), (m + "/ready", self.model_ready, ["GET"]),
            (mv + "/ready", self.model_ready, ["GET"]), (INFER_ROUTE, self.infer, ["POST"]),
            (mv + "/infer", self.infer, ["POST"]), ("/metrics", self.metrics, ["GET"]),
            ("/openapi.json", self.openapi, ["GET"]),
            ("/admin/{action}", self.admin, ["GET", "POST"]),
        ]
        return [Route(path, g(path, fn), methods=methods) for path, fn, methods in table]


def _version() -> str:
    from shopserve import __version__

    return __version__


def admin_headers(token: str) -> dict[str, Any]:
    return {"Authorization": f"Bearer {token}"}
