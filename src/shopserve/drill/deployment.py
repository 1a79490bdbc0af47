"""A deployment the drill starts itself (``--deployment``) and stops after, via the serving CLI.

The drill puts its fault proxy between the service and Redis by rewriting the deployment's
``cache.redis_url``, and sets an admin token when the file has none (the drill needs the API).
"""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from shopserve.drill.proxy import FaultProxy
from shopserve.drill.target import DrillTarget
from shopserve.errors import UnavailableError
from shopserve.testing import ShopserveProcess


class OwnedDeployment:
    """``spec`` is the deployment as a validated mapping (the CLI validates the file)."""

    def __init__(self, spec: dict[str, Any], workdir: Path | None = None) -> None:
        self.spec = dict(spec)
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="shopserve-drill-"))
        self.redis_proxy: FaultProxy | None = None
        self.process: ShopserveProcess | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None and self.process.process is not None
        return self.process.process.pid

    def start(self) -> DrillTarget:
        server = dict(self.spec.get("server") or {})
        server["host"] = "127.0.0.1"
        server.setdefault("admin_token", None)
        server["admin_token"] = server["admin_token"] or secrets.token_hex(16)
        cache = dict(self.spec.get("cache") or {})
        if cache.get("redis_url"):
            where = urlsplit(cache["redis_url"])
            self.redis_proxy = FaultProxy(where.hostname or "127.0.0.1", where.port or 6379).start()
            cache["redis_url"] = urlunsplit(where._replace(
                netloc=f"127.0.0.1:{self.redis_proxy.port}"))
        self.spec.update(server=server, cache=cache)
        self.process = ShopserveProcess.from_spec(self.spec, self.workdir)
        try:
            self.process.start()
        except RuntimeError as exc:
            self.stop()
            raise UnavailableError(f"the deployment did not start: {exc}") from exc
        models = self.spec.get("models", [])
        return DrillTarget(
            url=self.process.url, admin_token=server["admin_token"],
            home=Path(self.spec["home"]) if self.spec.get("home") else None,
            zones=list(self.spec.get("zones") or ["a"]),
            models=[_endpoint(m) for m in models],
            refs={_endpoint(m): m["ref"] for m in models},
            canaries={_endpoint(m): m["canary"]["ref"] for m in models if m.get("canary")},
            owner=self, redis_proxy=self.redis_proxy)

    def restart(self) -> None:
        """Start the same deployment again on the same port, after its supervisor was killed."""
        assert self.process is not None
        self.process.kill()
        fresh = ShopserveProcess(self.process.args, log_dir=self.workdir)
        try:
            fresh.start()
        except RuntimeError as exc:
            raise UnavailableError(f"the deployment did not start again: {exc}") from exc
        self.process = fresh

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        if self.redis_proxy is not None:
            self.redis_proxy.close()
            self.redis_proxy = None


def _endpoint(model: dict[str, Any]) -> str:
    return str(model.get("name") or str(model["ref"]).split("@")[0])
