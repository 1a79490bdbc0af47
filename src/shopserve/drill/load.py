"""The drill's load: an open-loop, bounded request stream behaving like a retrying client.

Each request is recorded as fresh, degraded (a fallback answered), rejected (429: shed by the
service) or lost (failed for the client even after its retries).
"""

from __future__ import annotations

import asyncio
import enum
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from shopserve.drill.spec import ClientSpec, DemoSource, FileSource, LoadSpec, Route
from shopserve.errors import SpecError

RETRY_STATUS = frozenset({502, 503, 504})


class Outcome(enum.StrEnum):
    FRESH = "fresh"
    DEGRADED = "degraded"
    REJECTED = "rejected"
    LOST = "lost"


@dataclass(slots=True)
class Sample:
    t: float  # seconds since the load started, when the request was sent
    latency_s: float  # until the final answer, retries included
    outcome: Outcome
    attempts: int
    failed_attempts: int
    last_failure_t: float | None  # when its last failed attempt ended
    version: int | None = None
    cached: bool = False
    status: int | None = None
    nonfinite: bool = False  # answered with a NaN, infinite or missing score
    spike: bool = False  # sent by the overload drill's h2load spike, not by the drill's client


def has_nonfinite_score(data: dict[str, Any]) -> bool:
    """Whether an answer carries a score that is not a finite number (JSON has no NaN: the
    service's encoder writes NaN and infinity as ``null``)."""
    scores: Any = data.get("scores")
    if scores is None:
        items = data.get("items") or data.get("results") or []
        scores = [i.get("score", 0.0) for i in items if isinstance(i, dict)]
    stack = [scores]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            stack.extend(value)
        elif value is None or (isinstance(value, float) and not math.isfinite(value)):
            return True
    return False


def build_requests(spec: LoadSpec, limit: int = 5000) -> list[tuple[str, dict[str, Any]]]:
    """Request bodies (path, JSON) in mix proportions, from the demo shop or a data file."""
    if isinstance(spec.source, FileSource):
        return _from_file(spec.source, limit)
    return _from_demo(spec, spec.source, limit)


def _from_file(source: FileSource, limit: int) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    try:
        lines = source.file.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SpecError(f"load source {source.file}: {exc.strerror or exc}") from exc
    for number, line in enumerate(lines[:limit], start=1):
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
            route = Route(item["route"])
            body = item["body"]
            if not isinstance(body, dict):
                raise TypeError("'body' must be an object")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            want = '{"route": "rank|search|recommend", "body": {...}}'
            raise SpecError(f"{source.file} line {number}: expected {want}: {exc}") from exc
        out.append((f"/v1/{route.value}", body))
    if not out:
        raise SpecError(f"{source.file}: no requests in it")
    return out


def _from_demo(spec: LoadSpec, source: DemoSource, limit: int) -> list[tuple[str, dict[str, Any]]]:
    from shopserve.data import DemoShopSpec, generate_demo_shop

    shop = generate_demo_shop(getattr(DemoShopSpec, source.demo)(seed=source.seed))
    rng = random.Random(source.seed)
    clicks = shop.clicks.drop_columns(["label"]).to_pylist()
    queries = sorted(set(shop.judgments.column("query").to_pylist()))
    customers = sorted({c for c in shop.purchases.column("customer_id").to_pylist() if c})
    weights = [m.weight for m in spec.mix]
    out: list[tuple[str, dict[str, Any]]] = []
    for i in range(limit):
        m = rng.choices(spec.mix, weights)[0]
        body: dict[str, Any] = {"model": m.model} if m.model else {}
        if m.route is Route.RANK and m.rows == 1:
            body["candidates"] = [clicks[i % len(clicks)]]
        elif m.route is Route.RANK:  # a page's candidate list: a different one per request
            body["candidates"] = rng.sample(clicks, min(m.rows, len(clicks)))
        elif m.route is Route.SEARCH:
            body.update(query=queries[i % len(queries)], k=m.k)
        else:
            body.update(customer=customers[i % len(customers)], k=m.k)
        out.append((f"/v1/{m.route.value}", body))
    return out


class LoadRunner:
    """Sends ``spec.rate`` requests/s for ``spec.duration_s`` seconds (an overload spike comes
    from h2load, ``spike.py``: this client could not offer it)."""

    def __init__(self, spec: LoadSpec, url: str,
                 requests: list[tuple[str, dict[str, Any]]]) -> None:
        self.spec = spec
        self.url = url
        self.requests = [(path, orjson.dumps(body)) for path, body in requests]
        self.samples: list[Sample] = []
        self.t0 = 0.0
        self.on_sample: Callable[[Sample], None] | None = None

    async def run(self, t0: float) -> list[Sample]:
        self.t0 = t0
        c = self.spec.client
        limits = httpx.Limits(max_connections=c.connections,
                              max_keepalive_connections=c.connections)
        inflight = asyncio.Semaphore(c.max_inflight)
        tasks: set[asyncio.Task[None]] = set()
        async with httpx.AsyncClient(base_url=self.url, limits=limits,
                                     timeout=c.attempt_timeout_s) as client:
            i, due = 0, t0
            while due < t0 + self.spec.duration_s:
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await inflight.acquire()
                task = asyncio.create_task(self._one(client, self.requests[i % len(self.requests)],
                                                     due - t0, c))
                task.add_done_callback(lambda _t: inflight.release())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
                due += 1.0 / self.spec.rate
            if tasks:
                await asyncio.gather(*tasks)
        return self.samples

    async def _one(self, client: httpx.AsyncClient, request: tuple[str, bytes], t: float,
                   c: ClientSpec) -> None:
        path, body = request
        start = time.monotonic()
        failed, last_fail = 0, None
        sample: Sample | None = None
        for attempt in range(c.retries + 1):
            try:
                r = await client.post(path, content=body,
                                      headers={"content-type": "application/json"})
            except httpx.HTTPError:
                r = None
            if r is not None and r.status_code == 200:
                data = orjson.loads(r.content)
                outcome = Outcome.DEGRADED if data.get("fallback") else Outcome.FRESH
                sample = Sample(t, 0.0, outcome, attempt + 1, failed, last_fail,
                                data.get("version"), bool(data.get("cached")), 200,
                                has_nonfinite_score(data))
                break
            if r is not None and r.status_code == 429:
                sample = Sample(t, 0.0, Outcome.REJECTED, attempt + 1, failed, last_fail,
                                status=429)
                break
            failed += 1
            last_fail = time.monotonic() - self.t0
            if r is not None and r.status_code not in RETRY_STATUS:
                sample = Sample(t, 0.0, Outcome.LOST, attempt + 1, failed, last_fail,
                                status=r.status_code)
                break
            if attempt < c.retries:
                await asyncio.sleep(c.backoff_ms / 1000 * (2 ** attempt))
        if sample is None:
            sample = Sample(t, 0.0, Outcome.LOST, c.retries + 1, failed, last_fail)
        sample.latency_s = time.monotonic() - start
        self.samples.append(sample)
        if self.on_sample is not None:
            self.on_sample(sample)
