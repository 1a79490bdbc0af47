"""Faults on what the service depends on: its Redis cache or its network path (through the fault
proxy). Its capacity (a flash-sale spike) is ``overload.py``."""

from __future__ import annotations

from shopserve.drill.faults.base import Fault, FaultContext
from shopserve.drill.proxy import FaultProxy, ProxyFaultSettings
from shopserve.drill.spec import ProxyMode
from shopserve.drill.target import DrillTarget
from shopserve.errors import UsageError


class ProxyImpairment(Fault):
    needs_admin = False

    def _proxy(self, target: DrillTarget) -> FaultProxy:
        if self.spec.between == "service":
            proxy = target.service_proxy
            if proxy is None:
                raise UsageError("a fault between the clients and the service needs the drill's "
                                 "service proxy; it is started for every proxy fault")
        else:
            proxy = target.redis_proxy
            if proxy is None:
                raise UsageError("a Redis fault needs --deployment with cache.redis_url set: the "
                                 "drill routes the service's Redis through its fault proxy")
        assert isinstance(proxy, FaultProxy)
        return proxy

    def settings(self) -> ProxyFaultSettings:
        s = self.spec
        return ProxyFaultSettings(s.mode, s.delay_ms, s.jitter_ms, s.share)

    def describe(self) -> str:
        s = self.spec
        extra = f" {s.delay_ms:g}±{s.jitter_ms:g} ms" if s.mode is ProxyMode.DELAY else ""
        between = "the clients and the service" if s.between == "service" \
            else "the service and Redis"
        return f"{s.mode.value}{extra} on {s.share:.0%} of the traffic between {between}"

    def how_undone(self) -> str:
        return "the fault proxy goes back to passing bytes through untouched"

    def check_target(self, target: DrillTarget) -> None:
        if getattr(self.spec, "between", "redis") == "redis":  # the runner starts the other
            self._proxy(target)

    def inject(self, ctx: FaultContext) -> None:
        self._proxy(ctx.target).set_fault(self.settings())

    def undo(self, ctx: FaultContext) -> None:
        self._proxy(ctx.target).set_fault(None)


class RedisOutage(ProxyImpairment):
    def settings(self) -> ProxyFaultSettings:
        return ProxyFaultSettings(ProxyMode.DOWN)

    def _proxy(self, target: DrillTarget) -> FaultProxy:
        if target.redis_proxy is None:
            raise UsageError("redis-outage needs --deployment with cache.redis_url set: the drill "
                             "routes the service's Redis through its fault proxy")
        assert isinstance(target.redis_proxy, FaultProxy)
        return target.redis_proxy

    def describe(self) -> str:
        return "Redis unreachable: every connection to it reset, new ones refused"
