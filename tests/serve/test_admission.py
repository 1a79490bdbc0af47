"""Adaptive admission: the in-flight limit follows the replica's event-loop lag (AIMD)."""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from pathlib import Path

import httpx
import orjson
from serve_models import ctr_row

from shopserve.serve.admission import DECREASE_EVERY_S, INCREASE_EVERY_S, AdmissionPolicy
from shopserve.testing import ShopserveProcess

LAG_MS = 2.0


def policy(limit: int = 8) -> AdmissionPolicy:
    admission = AdmissionPolicy(limit)
    admission.max_lag_s = LAG_MS / 1000  # as start() sets it, without a loop: a fake clock
    return admission


def refuse(admission: AdmissionPolicy) -> None:
    assert admission.refusal("/v1/rank", True).startswith(b"HTTP/1.1 429")


def test_the_limit_stays_put_without_lag_and_halves_only_when_lagging_while_refusing() -> None:
    admission = policy()
    now = 0.0
    for _ in range(100):  # no lag, nothing refused: nothing changes
        now += 0.002
        admission.adapt(0.0003, now)
    assert admission.limit == 8
    now += 0.002
    admission.adapt(0.050, now)  # a late loop that refuses nothing (a long GC, one big batch)
    assert admission.limit == 8
    refuse(admission)
    now += 0.002
    admission.adapt(0.003, now)
    assert admission.limit == 4
    refuse(admission)
    now += 0.002
    admission.adapt(0.003, now)  # within DECREASE_EVERY_S of the last decrease: held
    assert admission.limit == 4
    for expected in (2, 1, 1):
        now += DECREASE_EVERY_S
        refuse(admission)
        admission.adapt(0.010, now)
        assert admission.limit == expected  # the floor is one request


def test_the_limit_rises_by_one_per_interval_when_the_lag_is_gone() -> None:
    admission = policy()
    now = 0.0
    refuse(admission)
    admission.adapt(0.004, now)
    assert admission.limit == 4
    now += 0.001
    admission.adapt(0.0015, now)  # under the threshold but not under half of it: held
    assert admission.limit == 4
    raised = []
    while admission.limit < 8:
        before = admission.limit
        now += 0.001
        admission.adapt(0.0002, now)
        if admission.limit != before:
            assert admission.limit == before + 1
            raised.append(round(now, 3))
    # one step per INCREASE_EVERY_S, the first INCREASE_EVERY_S after the decrease
    assert raised == [round(INCREASE_EVERY_S * k, 3) for k in range(1, 5)]
    for _ in range(50):
        now += 0.001
        admission.adapt(0.0, now)
    assert admission.limit == 8  # never over max_in_flight


def test_a_fixed_limit_without_a_lag_bound() -> None:
    admission = AdmissionPolicy(3)
    loop = asyncio.new_event_loop()
    try:
        admission.start(loop, None)
        assert admission.max_lag_s is None and admission.limit == 3
        admission.stop()
    finally:
        loop.close()


def limit_gauge(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    found = re.search(r"^shopserve_admission_limit (\S+)$", text, re.M)
    assert found, text
    return float(found.group(1))


async def hammer(port: int, body: bytes, connections: int,
                 seconds: float) -> tuple[list[float], list[float]]:
    """``connections`` kept-alive connections sending ``body`` back to back for ``seconds``:
    (ms of the admitted answers, ms of the refusals)."""
    request = (b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    admitted: list[float] = []
    refused: list[float] = []
    end = time.monotonic() + seconds

    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < end:
                start = time.monotonic()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"content-length: (\d+)", head, re.I)
                assert length, head
                await reader.readexactly(int(length.group(1)))
                took = 1000 * (time.monotonic() - start)
                (refused if head.startswith(b"HTTP/1.1 429") else admitted).append(took)
                if head.startswith(b"HTTP/1.1 429"):
                    await asyncio.sleep(0.005)  # h2load-like: the client does not spin
        finally:
            writer.close()

    await asyncio.gather(*(one() for _ in range(connections)))
    return admitted, refused


def test_a_lagging_replica_admits_fewer_refuses_fast_and_recovers(
        serve_home: Path, tmp_path: Path) -> None:
    spec = {"home": str(serve_home), "replicas": 1,
            "server": {"max_in_flight": 8, "max_loop_lag_ms": LAG_MS},
            "models": [{"ref": "ctr@production", "cache": False, "queue_limit": 100_000,
                        "batching": {"max_batch_size": 4096}}]}
    # pages of 400 candidates: each costs the replica's loop milliseconds (parse, features,
    # the inline model call), so 8 of them in one round make the loop lag
    body = orjson.dumps({"candidates": [ctr_row(i) for i in range(400)]})
    with ShopserveProcess.from_spec(spec, tmp_path) as server:
        port = int(server.url.rsplit(":", 1)[1])
        assert httpx.post(server.url + "/v1/rank", content=body, timeout=10).status_code == 200
        assert limit_gauge(server.url) == 8  # at rest: max_in_flight

        async def load_and_watch() -> tuple[list[float], list[float], list[float]]:
            seen: list[float] = []

            async def watch() -> None:
                async with httpx.AsyncClient(timeout=10) as client:
                    for _ in range(15):
                        await asyncio.sleep(0.1)
                        text = (await client.get(server.url + "/metrics")).text
                        found = re.search(r"^shopserve_admission_limit (\S+)$", text, re.M)
                        assert found
                        seen.append(float(found.group(1)))

            (admitted, refused), _ = await asyncio.gather(hammer(port, body, 24, 2.0), watch())
            return admitted, refused, seen

        admitted, refused, seen = asyncio.run(load_and_watch())
        assert admitted and refused, (len(admitted), len(refused))
        assert min(seen) < 8, seen  # the limit came down while the loop lagged
        text = httpx.get(server.url + "/metrics").text
        lagged = re.search(r'shopserve_loop_lag_seconds_bucket\{le="0\.002"\} (\S+)', text)
        total = re.search(r"shopserve_loop_lag_seconds_count (\S+)", text)
        assert lagged and total and float(total.group(1)) > float(lagged.group(1))
        # a refusal waits for the loop's round, which holds fewer pages: faster than an answer
        assert statistics.median(refused) < statistics.median(admitted), \
            (statistics.median(refused), statistics.median(admitted))
        deadline = time.monotonic() + 5
        while limit_gauge(server.url) < 8:  # the lag is gone: back to max_in_flight
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert httpx.post(server.url + "/v1/rank", content=body, timeout=10).status_code == 200
