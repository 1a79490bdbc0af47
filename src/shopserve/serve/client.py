"""``shopserve.Client`` and ``AsyncClient``: call a shopserve deployment over HTTP (httpx).

Inference calls are idempotent, so a lost connection, a restarting replica (503), a passed
deadline (504) or back-pressure (429, honouring Retry-After) is retried on a fresh connection.
Error responses come back as the matching ``shopserve.errors`` class.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

import httpx
import numpy as np

from shopserve import errors
from shopserve.serve.v2 import v2_datatype

RETRY_STATUSES = {429, 502, 503, 504}
STATUS_ERRORS: dict[int, type[errors.ShopserveError]] = {
    400: errors.InputError, 401: errors.AuthError, 404: errors.NotFoundError,
    409: errors.ConflictError, 413: errors.PayloadTooLargeError, 422: errors.QualityGateError,
    429: errors.OverloadedError, 503: errors.UnavailableError, 504: errors.DeadlineExceededError,
}


def error_from(response: httpx.Response) -> errors.ShopserveError:
    """The ``ShopserveError`` an error response stands for, with the server's message."""
    try:
        body = response.json()
        message, kind = str(body.get("error", response.text)), str(body.get("type", ""))
    except ValueError:
        message, kind = response.text or response.reason_phrase, ""
    cls = getattr(errors, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.ShopserveError)):
        cls = STATUS_ERRORS.get(response.status_code, errors.ShopserveError)
    return cls(f"{response.status_code} from {response.request.url.path}: {message}")


def _infer_body(inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    tensors = []
    for name, value in inputs.items():
        arr = np.asarray(value)
        tensors.append({"name": name, "shape": list(arr.shape),
                        "datatype": v2_datatype(arr.dtype.name), "data": arr.reshape(-1).tolist()})
    return {"inputs": tensors}


def _outputs(body: dict[str, Any]) -> dict[str, np.ndarray]:
    return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in body["outputs"]}


def _tls(verify: bool | str | ssl.SSLContext) -> bool | ssl.SSLContext:
    """A CA bundle path becomes the context httpx wants."""
    return ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify


class _Base:
    def __init__(self, base_url: str, timeout_s: float, retries: int, backoff_s: float,
                 admin_token: str | None, token: str | None = None,
                 admin_url: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.admin_url = (admin_url or base_url).rstrip("/")
        self.admin_headers = {"Authorization": f"Bearer {admin_token}"} if admin_token else {}
        self.data_headers = {"Authorization": f"Bearer {token}"} if token else {}

    def _target(self, path: str) -> tuple[str, dict[str, str]]:
        """The URL and headers for ``path``: admin calls carry the admin token (and may go to
        the admin address), everything else the data-plane token."""
        if path.startswith("/admin/"):
            return self.admin_url + path, self.admin_headers
        return path, self.data_headers

    def _wait(self, attempt: int, response: httpx.Response | None) -> float | None:
        """Seconds to wait before the next try, or None when it is not worth retrying."""
        if attempt >= self.retries:
            return None
        if response is not None and response.status_code not in RETRY_STATUSES:
            return None
        after = response.headers.get("retry-after") if response is not None else None
        wait = self.backoff_s * (2 ** attempt)
        return min(float(after), 2.0) if after and after.isdigit() else wait


class Client(_Base):
    """Blocking client. ``Client("http://127.0.0.1:8000").rank([{...}])``.

    ``token``: the data-plane token, ``admin_token``/``admin_url``: the admin API's, ``verify``:
    a CA bundle path (or False) for a deployment with its own TLS certificate."""

    def __init__(self, base_url: str, timeout_s: float = 5.0, retries: int = 3,
                 backoff_s: float = 0.05, admin_token: str | None = None,
                 token: str | None = None, admin_url: str | None = None,
                 verify: bool | str | ssl.SSLContext = True) -> None:
        super().__init__(base_url, timeout_s, retries, backoff_s, admin_token, token, admin_url)
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout_s,
                                 verify=_tls(verify))

    def request(self, method: str, path: str, json: Any = None, retry: bool = True) -> Any:
        attempt = 0 if retry else self.retries
        while True:
            try:
                url, headers = self._target(path)
                response = self.http.request(method, url, json=json, headers=headers)
            except httpx.TransportError as exc:
                wait = self._wait(attempt, None)
                if wait is None:
                    raise errors.UnavailableError(f"{path}: {type(exc).__name__}: {exc}") from exc
            else:
                if response.is_success:
                    return response.json()
                wait = self._wait(attempt, response)
                if wait is None:
                    raise error_from(response)
            attempt += 1
            time.sleep(wait)

    def rank(self, candidates: list[dict[str, Any]], model: str | None = None,
             **extra: Any) -> dict[str, Any]:
        return dict(self.request("POST", "/v1/rank", {"candidates": candidates, "model": model,
                                                      **extra}))

    def search(self, query: str, k: int = 10, model: str | None = None,
               **extra: Any) -> dict[str, Any]:
        return dict(self.request("POST", "/v1/search", {"query": query, "k": k, "model": model,
                                                        **extra}))

    def recommend(self, customer: str | None, k: int = 10, model: str | None = None,
                  **extra: Any) -> dict[str, Any]:
        return dict(self.request("POST", "/v1/recommend", {"customer": customer, "k": k,
                                                           "model": model, **extra}))

    def infer(self, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return _outputs(self.request("POST", f"/v2/models/{model}/infer", _infer_body(inputs)))

    def ready(self) -> bool:
        try:
            return self.http.get("/v2/health/ready").status_code == 200
        except httpx.TransportError:
            return False

    def admin(self, action: str, **body: Any) -> dict[str, Any]:
        """An admin action; long ones (deploy, rollback, drain) answer 202 and run on: poll
        ``admin("status")`` until its ``job`` is None."""
        method = "GET" if action == "status" else "POST"
        return dict(self.request(method, f"/admin/{action}", body if body else None,
                                 retry=method == "GET"))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Base):
    """The same calls for asyncio code: ``await AsyncClient(url).rank([...])``."""

    def __init__(self, base_url: str, timeout_s: float = 5.0, retries: int = 3,
                 backoff_s: float = 0.05, admin_token: str | None = None,
                 token: str | None = None, admin_url: str | None = None,
                 verify: bool | str | ssl.SSLContext = True) -> None:
        super().__init__(base_url, timeout_s, retries, backoff_s, admin_token, token, admin_url)
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s,
                                       verify=_tls(verify))

    async def request(self, method: str, path: str, json: Any = None) -> Any:
        attempt = 0
        while True:
            try:
                url, headers = self._target(path)
                response = await self.http.request(method, url, json=json, headers=headers)
            except httpx.TransportError as exc:
                wait = self._wait(attempt, None)
                if wait is None:
                    raise errors.UnavailableError(f"{path}: {type(exc).__name__}: {exc}") from exc
            else:
                if response.is_success:
                    return response.json()
                wait = self._wait(attempt, response)
                if wait is None:
                    raise error_from(response)
            attempt += 1
            await asyncio.sleep(wait)

    async def rank(self, candidates: list[dict[str, Any]], model: str | None = None,
                   **extra: Any) -> dict[str, Any]:
        return dict(await self.request("POST", "/v1/rank", {"candidates": candidates,
                                                            "model": model, **extra}))

    async def search(self, query: str, k: int = 10, model: str | None = None) -> dict[str, Any]:
        return dict(await self.request("POST", "/v1/search", {"query": query, "k": k,
                                                              "model": model}))

    async def recommend(self, customer: str | None, k: int = 10,
                        model: str | None = None) -> dict[str, Any]:
        return dict(await self.request("POST", "/v1/recommend", {"customer": customer, "k": k,
                                                                 "model": model}))

    async def infer(self, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        body = await self.request("POST", f"/v2/models/{model}/infer", _infer_body(inputs))
        return _outputs(body)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
