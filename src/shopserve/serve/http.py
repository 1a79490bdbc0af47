"""The HTTP adapter: Starlette routes over ``DataPlane``; the only place errors become responses.

Plain Starlette with orjson (no request models): parsing is done by hand so that a one-row
ranking request costs as little as the HTTP layer itself.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from shopserve.errors import InputError, PayloadTooLargeError, ShopserveError, UnavailableError
from shopserve.monitor import requests as request_monitor
from shopserve.serve.access import AccessPolicy
from shopserve.serve.admission import ADMITTED_PREFIXES, AdmissionPolicy
from shopserve.serve.dataplane import Answer, DataPlane

log = logging.getLogger("shopserve.serve")
MAX_ROWS = 1000
MAX_QUERY_CHARS = 1000
MAX_K = 1000
Handler = Callable[[Request], Awaitable[Response]]
BodyHandler = Callable[[dict[str, Any]], Awaitable[Response]]
RawHandler = Callable[[Scope, bytes], Awaitable[Response]]
T = TypeVar("T")


class JsonResponse(Response):
    """A JSON body and its two headers, set directly (Starlette's ``Response.__init__``
    renders and re-checks them, a measurable share of a one-row request)."""

    media_type = "application/json"

    def __init__(self, body: bytes, status: int = 200,
                 headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        self.body = body
        self.background = None
        self.raw_headers = [(b"content-type", b"application/json"),
                            (b"content-length", b"%d" % len(body))]
        if headers:
            self.raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1"))
                                 for k, v in headers.items()]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JsonResponse(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY), status, headers)


def answer_response(answer: Answer, fields: dict[str, Any]) -> Response:
    """``answer``'s envelope (who answered, how) followed by ``fields``, as one JSON object."""
    rest = orjson.dumps(fields, option=orjson.OPT_SERIALIZE_NUMPY)
    return JsonResponse(_envelope(answer.model, answer.version, answer.fallback, answer.cached)
                        + rest[1:])


@functools.lru_cache(maxsize=1024)
def _envelope(model: str, version: int, fallback: str | None, cached: bool) -> bytes:
    """The envelope as the start of a JSON object, up to and including the comma after it."""
    return orjson.dumps(Answer(None, model, version, fallback, cached).envelope())[:-1] + b","


def error_response(exc: ShopserveError) -> Response:
    headers = {}
    if isinstance(exc, UnavailableError) and exc.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    return json_response({"error": exc.message, "type": type(exc).__name__}, exc.http_status,
                         headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) anything over ``limit`` bytes before reading all of it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"request body is {declared} bytes; the limit is {limit}")
    first = await request.receive()  # the common case: the whole body in one message
    if first["type"] == "http.request" and not first.get("more_body", False):
        body: bytes = first.get("body", b"")
        if len(body) > limit:
            raise PayloadTooLargeError(f"request body is over the limit of {limit} bytes")
        return body
    chunks, size = [first.get("body", b"")], len(first.get("body", b""))
    if first["type"] != "http.request":
        raise InputError("the client went away before sending its body")
    while True:
        message = await request.receive()
        if message["type"] != "http.request":
            raise InputError("the client went away before sending its whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    return parse_json(await read_body(request, limit))


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"request body must be a JSON object, got {type(data).__name__}")
    return data


async def answer_guarded(route: str, model: str, headers: list[tuple[bytes, bytes]],
                         handler: Callable[[T], Awaitable[Response]], arg: T) -> Response:
    """``handler(arg)``'s response, errors made responses, counted and timed by route; a bug
    is a 500 that never kills the replica."""
    start = time.perf_counter()
    record = request_monitor.begin(headers)  # X-Request-ID, in log lines
    try:
        response = await handler(arg)
    except ShopserveError as exc:
        response = error_response(exc)
    except Exception:
        log.exception("unexpected error on %s", route)
        response = json_response({"error": "internal error; see the replica log",
                                  "type": "InternalError"}, 500)
    request_monitor.finish(record, route, model, response, time.perf_counter() - start)
    return response


def guarded(route: str, handler: Handler) -> Handler:
    """A Starlette endpoint answered by ``answer_guarded``."""
    async def run(request: Request) -> Response:
        return await answer_guarded(route, request.path_params.get("name", ""),
                                    request.scope["headers"], handler, request)
    return run


class DomainRoutes:
    """``/v1/rank``, ``/v1/search``, ``/v1/recommend``."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self.limit = plane.spec.server.max_body_bytes
        self.defaults = {op: [n for n, e in plane.endpoints.items() if e.kind.value == op]
                         for op in ("rank", "search", "recommend")}

    def _model(self, data: dict[str, Any], op: str) -> str:
        name = data.get("model")
        if name is None:
            names = self.defaults[op]
            if len(names) != 1:
                raise InputError(f"'model' is required: serving {sorted(self.plane.endpoints)}")
            return names[0]
        if not isinstance(name, str):
            raise InputError("'model' must be a string")
        return name

    async def rank(self, data: dict[str, Any]) -> Response:
        rows = data.get("candidates")
        if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
            raise InputError("'candidates' must be a non-empty list of objects (feature rows)")
        if len(rows) > MAX_ROWS:
            raise InputError(f"'candidates' has {len(rows)} rows; at most {MAX_ROWS} per request")
        answer = await self.plane.answer(self._model(data, "rank"), "rank", rows, len(rows),
                                         _timeout(data))
        return answer_response(answer, {"scores": answer.result})

    async def search(self, data: dict[str, Any]) -> Response:
        query = data.get("query")
        if not isinstance(query, str) or not query.strip():
            raise InputError("'query' must be a non-empty string")
        if len(query) > MAX_QUERY_CHARS:
            raise InputError(f"'query' has {len(query)} characters; at most {MAX_QUERY_CHARS}")
        k = _k(data)
        exclude = _exclude(data, "filters")
        answer = await self.plane.answer(self._model(data, "search"), "search",
                                         (query, k + len(exclude)), 1, _timeout(data))
        hits = [h for h in answer.result if h["product_id"] not in exclude][:k]
        return answer_response(answer, {"query": query, "hits": hits})

    async def recommend(self, data: dict[str, Any]) -> Response:
        customer = data.get("customer")
        if customer is not None and not isinstance(customer, str):
            raise InputError("'customer' must be a string id or null")
        k = _k(data)
        exclude = _exclude(data, "context")
        answer = await self.plane.answer(self._model(data, "recommend"), "recommend",
                                         (customer, k + len(exclude)), 1, _timeout(data))
        items = [h for h in answer.result if h["product_id"] not in exclude][:k]
        return answer_response(answer, {"customer": customer, "items": items})

    def handlers(self) -> dict[str, BodyHandler]:
        """Each operation's handler of a parsed request body, by path."""
        return {f"/v1/{op}": getattr(self, op) for op in ("rank", "search", "recommend")}

    def routes(self) -> list[Route]:
        def from_request(parsed: BodyHandler) -> Handler:
            async def run(request: Request) -> Response:
                return await parsed(await read_json(request, self.limit))
            return run

        return [Route(path, guarded(path.removeprefix("/v1/"), from_request(parsed)),
                      methods=["POST"]) for path, parsed in self.handlers().items()]


def _k(data: dict[str, Any]) -> int:
    k = data.get("k", 10)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise InputError(f"'k' must be a whole number from 1 to {MAX_K}, got {k!r}")
    return k


def _timeout(data: dict[str, Any]) -> float | None:
    t = data.get("timeout_ms")
    if t is not None and (isinstance(t, bool) or not isinstance(t, int | float)):
        raise InputError(f"'timeout_ms' must be a number, got {t!r}")
    return None if t is None else float(t)


def _exclude(data: dict[str, Any], field: str) -> set[str]:
    extra = data.get(field) or {}
    if not isinstance(extra, dict) or set(extra) - {"exclude"}:
        raise InputError(f"'{field}' may only hold 'exclude' (a list of product ids)")
    ids = extra.get("exclude", [])
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or len(ids) > MAX_K:
        raise InputError(f"'{field}.exclude' must be a list of at most {MAX_K} product ids")
    return set(ids)


async def not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    what = "method not allowed" if status == 405 else "no such route"
    return json_response({"error": f"{what}: {request.method} {request.url.path}",
                          "type": "NotFoundError"}, status)


class ServingApp(Starlette):
    """Starlette, with the domain routes called straight from the server.

    Starlette's error and exception middleware and its router wrap every request and every
    ``send``; the domain routes are already ``guarded`` (every error becomes a response), so
    they skip that layer: measured, it was a sizeable share of a one-row request's CPU time.
    """

    fast: dict[str, Handler]
    lane: FastLane
    access: AccessPolicy
    admission: AdmissionPolicy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(ADMITTED_PREFIXES):
            await self._serve(scope, receive, send)
            return
        admission = self.admission
        if not admission.admit():  # before the body is read: an overloaded replica sheds fast
            await admission.refuse(scope["path"], send)
            return
        try:
            await self._serve(scope, receive, send)
        finally:
            admission.release()

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.access.active:
            try:
                self.access.check(scope)
            except ShopserveError as exc:
                await error_response(exc)(scope, receive, send)
                return
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self.fast.get(scope["path"])
            if handler is not None:
                scope["app"] = self
                response = await handler(Request(scope, receive))
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


class LaneRoute(NamedTuple):
    """A route of the fast lane: its name and model for metrics, and its handler of the
    request's scope and whole body."""

    route: str
    model: str
    handler: RawHandler


class FastLane:
    """Inference routes answered by the HTTP protocol itself once a request's whole body has
    arrived (``protocol.py``): no ASGI cycle, receive/send messages, Starlette request or
    response writing on the path every page view takes. Requests the lane does not take
    (chunked or large bodies, query strings, pipelined behind another request) go the ASGI way
    to the same handlers, with the same answers."""

    def __init__(self, limit: int, access: AccessPolicy) -> None:
        self.limit = limit
        self.access = access
        self.routes: dict[bytes, LaneRoute] = {}

    def add(self, path: str, route: LaneRoute) -> None:
        self.routes[path.encode()] = route

    async def answer(self, route: LaneRoute, scope: Scope, body: bytes) -> Response:
        return await answer_guarded(route.route, route.model, scope["headers"], self._call,
                                    (route.handler, scope, body))

    async def _call(self, args: tuple[RawHandler, Scope, bytes]) -> Response:
        handler, scope, body = args
        if self.access.active:
            self.access.check(scope)
        return await handler(scope, body)


def _parsed(handler: BodyHandler) -> RawHandler:
    def run(scope: Scope, body: bytes) -> Awaitable[Response]:
        return handler(parse_json(body))
    return run


def build_app(plane: DataPlane, extra_routes: list[Route],
              lane_routes: dict[str, LaneRoute] | None = None) -> ServingApp:
    """The replica's app; ``lane_routes`` (path: route) join the domain routes in the lane."""
    domain = DomainRoutes(plane)
    routes = domain.routes()
    app = ServingApp(routes=routes + extra_routes,
                     exception_handlers={404: not_found, 405: not_found})
    app.fast = {r.path: r.endpoint for r in routes}
    app.access = AccessPolicy(plane.spec.server)
    app.admission = plane.admission
    app.lane = FastLane(domain.limit, app.access)
    for path, handler in domain.handlers().items():
        app.lane.add(path, LaneRoute(path.removeprefix("/v1/"), "", _parsed(handler)))
    for path, route in (lane_routes or {}).items():
        app.lane.add(path, route)
    return app
