"""The supervisor's side of the admin API (deploy, canary, rollback, drain) and the canary guard.

Listens on a private loopback port; replicas forward token-checked ``/admin/*`` calls here.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, multiprocess
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shopserve.errors import (
    AuthError,
    ConflictError,
    InputError,
    NotFoundError,
    ShopserveError,
)
from shopserve.registry import Registry
from shopserve.serve.http import error_response, json_response
from shopserve.serve.spec import GuardSpec
from shopserve.serve.state import ControlState
from shopserve.serve.supervisor import Supervisor

log = logging.getLogger("shopserve.serve")


class ControlApi:
    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.lock = asyncio.Lock()
        self.history = {name: [ref] for name, ref in sup.resolved_refs().items()}
        self.job: asyncio.Task[Any] | None = None
        self.job_name = ""

    def start_job(self, name: str, coro: Any) -> Response:
        """Long actions (rolling replicas) run here, not in the request: the replica that
        forwarded the call may itself be replaced before they finish."""
        if self.job is not None and not self.job.done():
            coro.close()
            raise ConflictError(f"{self.job_name!r} is still running; try again when it is done")

        async def run() -> None:
            try:
                await coro
                self.save(f"{name}: done")
            except Exception as exc:
                self.save(f"{name}: failed: {exc}")

        self.job_name = name
        self.job = asyncio.get_running_loop().create_task(run())
        return json_response({"job": name, "status": "started"}, 202)

    @property
    def state(self) -> ControlState:
        return ControlState.read(self.sup.state_path)

    def save(self, event: str, **changes: Any) -> ControlState:
        state = self.state.model_copy(update={**changes, "events": [*self.state.events, event]})
        state.write(self.sup.state_path)
        log.warning("%s", event)
        return state

    async def body(self, request: Request) -> dict[str, Any]:
        try:
            data = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            raise InputError(f"admin body is not valid JSON: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("model", ""), str):
            raise InputError("admin body must be a JSON object; 'model' a string")
        name = data.get("model")
        if name is not None and name not in self.history:
            raise NotFoundError(f"unknown model {name!r}; serving {sorted(self.history)}")
        return data

    async def status(self, request: Request) -> Response:
        running = self.job_name if self.job is not None and not self.job.done() else None
        return json_response({"port": self.sup.port, "state": self.state.model_dump(),
                              "job": running,
                              "replicas": [{"slot": r.slot, "zone": r.zone, "pid": r.process.pid,
                                            "state": r.state.value}
                                           for r in self.sup.replicas.values()]})

    async def deploy(self, request: Request) -> Response:
        data = await self.body(request)
        name, ref = data.get("model"), data.get("ref")
        if not isinstance(name, str) or not isinstance(ref, str):
            raise InputError("deploy needs 'model' (endpoint name) and 'ref' (e.g. ctr@4)")
        resolved = Registry.open(self.sup.spec.home).get(ref).ref  # unknown refs fail now
        return self.start_job(f"deploy {name} {resolved}", self.roll(name, resolved))

    async def roll(self, name: str, ref: str) -> dict[str, Any]:
        """Every replica replaced in turn by one serving ``ref``; back to the old on failure."""
        resolved = Registry.open(self.sup.spec.home).get(ref).ref
        async with self.lock:
            before = self.state
            self.save(f"deploy {name}: {resolved}", refs={**before.refs, name: resolved})
            try:
                for slot in sorted(self.sup.replicas):
                    await self.sup.replace(slot)
            except ShopserveError as exc:
                self.save(f"deploy {name}: {resolved} failed ({exc}); back to the old version",
                          refs=before.refs)
                raise ConflictError(f"deploy of {resolved} failed: {exc}") from exc
            self.history[name].append(resolved)
        return {"model": name, "ref": resolved, "replicas": len(self.sup.replicas)}

    async def canary(self, request: Request) -> Response:
        data = await self.body(request)
        name, weight = data.get("model"), data.get("weight")
        if not isinstance(name, str) or not isinstance(weight, int | float) or not 0 <= weight <= 1:
            raise InputError("canary needs 'model' and 'weight' between 0 and 1")
        if self.sup.spec.model(name).canary is None:
            raise ConflictError(f"model {name!r} has no canary in the deployment")
        weights = {**self.state.canary_weights, name: float(weight)}
        return json_response(self.save(f"canary {name}: weight {weight}",
                                       canary_weights=weights).model_dump())

    async def rollback(self, request: Request) -> Response:
        data = await self.body(request)
        name = data.get("model")
        if not isinstance(name, str):
            raise InputError("rollback needs 'model'")
        if self.state.canary_weights.get(name, 0) > 0 or self.sup.spec.model(name).canary:
            weights = {**self.state.canary_weights, name: 0.0}
            self.save(f"rollback {name}: canary weight 0", canary_weights=weights)
        if len(self.history[name]) > 1:
            previous = self.history[name][-2]

            async def back() -> None:
                await self.roll(name, previous)
                self.history[name] = [*self.history[name][:-3], previous]

            return self.start_job(f"rollback {name} {previous}", back())
        return json_response({"model": name, "rolled_back": True, "state": self.state.model_dump()})

    async def drain(self, request: Request) -> Response:
        data = await self.body(request)
        slots = [s for s, r in self.sup.replicas.items()
                 if data.get("slot") == s or data.get("zone") == r.zone]
        if not slots:
            raise InputError(f"drain needs 'slot' (0..{len(self.sup.replicas) - 1}) or 'zone' "
                             f"({sorted(set(self.sup.spec.zones))})")
        async def replace() -> None:
            async with self.lock:
                for slot in slots:
                    await self.sup.replace(slot)

        return self.start_job(f"drain slots {slots}", replace())

    async def run(self, request: Request) -> Response:
        action = request.path_params["action"]
        handler = getattr(self, action, None) if action in (
            "status", "deploy", "canary", "rollback", "drain") else None
        if handler is None:
            return json_response({"error": f"unknown admin action {action!r}"}, 404)
        try:
            response: Response = await handler(request)
            return response
        except ShopserveError as exc:
            return error_response(exc)

    def app(self) -> Starlette:
        """The private loopback API the replicas forward token-checked admin calls to."""
        return Starlette(routes=[Route("/{action}", self.run, methods=["GET", "POST"])])

    def public_app(self, token: str) -> Starlette:
        """``/admin/{action}`` on its own address (``server.admin_port``), token checked here
        in constant time; the data port then has no admin API at all."""
        async def checked(request: Request) -> Response:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), token.encode()):
                return error_response(AuthError("missing or wrong admin token "
                                                "(Authorization: Bearer <token>)"))
            return await self.run(request)
        return Starlette(routes=[Route("/admin/{action}", checked, methods=["GET", "POST"])])


def canary_verdict(guard: GuardSpec, stable: dict[str, float],
                   canary: dict[str, float]) -> str | None:
    """Why the canary must go (or None), from per-version totals: calls, errors, seconds, score."""
    calls = canary.get("calls", 0.0)
    if calls < guard.min_requests:
        return None
    if canary.get("errors", 0.0) / calls > guard.max_error_rate:
        return f"error rate {canary['errors'] / calls:.3f} > {guard.max_error_rate}"
    mean_ms = 1000 * canary.get("seconds", 0.0) / calls
    # NaN compares False with everything: a canary answering NaN must fail the guard, not pass.
    if not math.isfinite(mean_ms) or mean_ms > guard.max_mean_latency_ms:
        return f"mean model latency {mean_ms:.1f} ms > {guard.max_mean_latency_ms} ms"
    if canary.get("scored", 0) and stable.get("scored", 0):
        shift = abs(canary["score"] / canary["scored"] - stable["score"] / stable["scored"])
        if not math.isfinite(shift) or shift > guard.max_score_shift:
            return f"mean score moved by {shift:.3f} > {guard.max_score_shift}"
    return None


def version_totals(model: str) -> dict[str, dict[str, float]]:
    """Per-version totals summed over every replica (prometheus multiprocess files)."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    names = {"shopserve_version_calls_total": "calls", "shopserve_version_errors_total": "errors",
             "shopserve_version_seconds_total": "seconds", "shopserve_score_sum_total": "score",
             "shopserve_scored_total": "scored"}
    totals: dict[str, dict[str, float]] = {}
    for family in registry.collect():
        for sample in family.samples:
            key = names.get(sample.name)
            if key and sample.labels.get("model") == model:
                per = totals.setdefault(sample.labels["version"], {})
                per[key] = per.get(key, 0.0) + sample.value
    return totals


async def guard_canaries(api: ControlApi) -> None:
    """Set a canary's weight to 0 (and record why) as soon as its guard is broken.

    Judged on what happened since the canary's weight last went above 0, so that earlier
    traffic of the same version (say, as the stable one) does not count for or against it.
    """
    since: dict[str, dict[str, dict[str, float]]] = {}
    while not api.sup.stopping:
        await asyncio.sleep(1.0)
        registry = Registry.open(api.sup.spec.home)
        for m in api.sup.spec.models:
            weight = api.state.canary_weights.get(m.endpoint, m.canary.weight if m.canary else 0)
            if m.canary is None or weight == 0:
                since.pop(m.endpoint, None)
                continue
            totals = version_totals(m.endpoint)
            if m.endpoint not in since:
                since[m.endpoint] = totals
                continue
            stable_v = str(registry.get(api.state.refs.get(m.endpoint, m.ref)).version)
            canary_v = str(registry.get(m.canary.ref).version)
            why = canary_verdict(m.canary.guard, _delta(totals, since[m.endpoint], stable_v),
                                 _delta(totals, since[m.endpoint], canary_v))
            if why:
                weights = {**api.state.canary_weights, m.endpoint: 0.0}
                api.save(f"canary {m.endpoint} rolled back automatically: {why}",
                         canary_weights=weights)


def _delta(now: dict[str, dict[str, float]], then: dict[str, dict[str, float]],
           version: str) -> dict[str, float]:
    before = then.get(version, {})
    return {k: v - before.get(k, 0.0) for k, v in now.get(version, {}).items()}
