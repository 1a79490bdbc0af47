"""The OpenAPI 3.1 document served at ``/openapi.json``, written out by hand.

Requests are parsed by hand for speed, so the schemas here are the single written description
of what each route accepts; ``tests/serve`` checks every route of the app appears in it.
"""

from __future__ import annotations

from typing import Any

ERROR = {"type": "object", "properties": {"error": {"type": "string"}, "type": {"type": "string"}}}
ENVELOPE = {
    "model": {"type": "string"}, "version": {"type": "integer"},
    "fallback": {"type": "boolean", "description": "answered by a fallback (degraded)"},
    "fallback_source": {"type": ["string", "null"], "enum": [None, "last_good", "popular", "bm25"]},
    "cached": {"type": "boolean"},
}
HIT = {"type": "object", "properties": {"product_id": {"type": "string"},
                                        "score": {"type": "number"}, "title": {"type": "string"}}}
COMMON = {"model": {"type": "string", "description": "needed when several models fit"},
          "timeout_ms": {"type": "number", "description": "per-request deadline"}}


def _op(summary: str, request: dict[str, Any] | None, response: dict[str, Any],
        method: str = "post") -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {
        "200": {"description": "OK", "content": {"application/json": {"schema": response}}},
        "4XX": {"description": "the request was wrong; the message names what",
                "content": {"application/json": {"schema": ERROR}}},
        "503": {"description": "unavailable or overloaded (Retry-After set)",
                "content": {"application/json": {"schema": ERROR}}}}}
    if request is not None:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": request}}}
    return {method: op}


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required or []}


def openapi_document(models: list[str]) -> dict[str, Any]:
    any_obj: dict[str, Any] = {"type": "object"}
    paths: dict[str, Any] = {
        "/v1/rank": _op("Score candidate rows (CTR)", _obj(
            {**COMMON, "customer": {"type": "string"},
             "candidates": {"type": "array", "items": any_obj, "minItems": 1, "maxItems": 1000}},
            ["candidates"]), _obj({**ENVELOPE, "scores": {"type": "array",
                                                          "items": {"type": "number"}}})),
        "/v1/search": _op("Products for a query", _obj(
            {**COMMON, "query": {"type": "string", "minLength": 1, "maxLength": 1000},
             "k": {"type": "integer", "minimum": 1, "maximum": 1000},
             "filters": _obj({"exclude": {"type": "array", "items": {"type": "string"}}})},
            ["query"]), _obj({**ENVELOPE, "hits": {"type": "array", "items": HIT}})),
        "/v1/recommend": _op("Items for a customer", _obj(
            {**COMMON, "customer": {"type": ["string", "null"]},
             "k": {"type": "integer", "minimum": 1, "maximum": 1000},
             "context": _obj({"exclude": {"type": "array", "items": {"type": "string"}}})}),
            _obj({**ENVELOPE, "items": {"type": "array", "items": HIT}})),
        "/v2/health/live": _op("Process is up", None, any_obj, "get"),
        "/v2/health/ready": _op("Warmed up and serving", None, any_obj, "get"),
        "/v2": _op("Server metadata (Open Inference Protocol)", None, any_obj, "get"),
        "/metrics": _op("Prometheus metrics of all replicas", None, {"type": "string"}, "get"),
        "/openapi.json": _op("This document", None, any_obj, "get"),
        "/admin/{action}": {
            **_op("Admin: status (GET); deploy, canary, rollback, drain (POST); needs "
                  "'Authorization: Bearer <admin_token>'", None, any_obj, "get"),
            **_op("Admin action", any_obj, any_obj)},
    }
    infer = _op("Open Inference Protocol infer; Triton binary tensor extension supported "
                "(Inference-Header-Content-Length)", any_obj, any_obj)
    for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        paths[base] = _op("Model metadata", None, any_obj, "get")
        paths[base + "/ready"] = _op("Model ready", None, any_obj, "get")
        paths[base + "/infer"] = infer
    return {"openapi": "3.1.0",
            "info": {"title": "shopserve", "version": "1",
                     "description": f"Serving models: {', '.join(models)}"},
            "paths": paths}
