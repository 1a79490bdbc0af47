"""Who may call the data plane: an optional bearer token and per-client token-bucket limits.

Checked by the replica's app before routing; the admin API has its own token (``routes.py``).
Tokens are compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import hmac
import math
import time
from collections import OrderedDict

from starlette.types import Scope

from shopserve.errors import AuthError, OverloadedError
from shopserve.serve.spec import ServerSpec

OPEN_PATHS = ("/v2/health/live", "/v2/health/ready")  # probes need no token
LIMITED_PREFIXES = ("/v1/", "/v2/models/")  # inference: what rate limits protect
MAX_CLIENTS = 10_000  # buckets kept per replica; the least recently seen go first


class TokenBuckets:
    """``rate`` requests per second per client, bursts of up to ``burst``."""

    def __init__(self, rate: float, burst: int, max_clients: int = MAX_CLIENTS) -> None:
        self.rate, self.burst, self.max_clients = rate, burst, max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when

    def take(self, client: str, now: float | None = None) -> float:
        """0 when ``client`` may go now, else the seconds until it may."""
        now = time.monotonic() if now is None else now
        tokens, then = self._buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[client] = (tokens, now)
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


class AccessPolicy:
    """The data-plane checks of one replica, from the deployment's server settings."""

    def __init__(self, server: ServerSpec) -> None:
        self.token = server.data_token.encode() if server.data_token else None
        limit = server.rate_limit
        self.buckets = TokenBuckets(limit.per_s, limit.burst) if limit else None
        self.active = self.token is not None or self.buckets is not None

    def check(self, scope: Scope) -> None:
        """Raise ``AuthError`` (401) or ``OverloadedError`` (429 + Retry-After) for a request."""
        path: str = scope["path"]
        if path in OPEN_PATHS or path.startswith("/admin/"):
            return
        if self.token is not None:
            given = b""
            for name, value in scope["headers"]:
                if name == b"authorization":
                    given = value.removeprefix(b"Bearer ").strip()
            if not hmac.compare_digest(given, self.token):
                raise AuthError("missing or wrong data-plane token (Authorization: Bearer "
                                "<token>)")
        if self.buckets is not None and path.startswith(LIMITED_PREFIXES):
            client = scope.get("client")
            wait = self.buckets.take(client[0] if client else "")
            if wait > 0:
                raise OverloadedError(
                    f"rate limit: {self.buckets.rate:g} requests/s per client, bursts of "
                    f"{self.buckets.burst}", retry_after_s=max(1.0, math.ceil(wait)))
