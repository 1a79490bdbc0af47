"""The serving parts on their own: batcher, caches, canary verdicts, the V2 codec."""

from __future__ import annotations

import asyncio
import contextlib
import time

import numpy as np
import pytest

from shopserve.errors import DeadlineExceededError, InputError, OverloadedError
from shopserve.serve.admission import AdmissionPolicy
from shopserve.serve.batching import Batcher
from shopserve.serve.cache import LruTtlCache
from shopserve.serve.control import canary_verdict
from shopserve.serve.spec import GuardSpec
from shopserve.serve.v2 import decode_request, encode_response


def doubler(batches: list[list[int]], sizes: list[int]) -> Batcher[int, int]:
    def run(payloads: list[int]) -> list[int]:
        batches.append(list(payloads))
        if any(p < 0 for p in payloads):
            raise InputError("negative")
        return [2 * p for p in payloads]
    return Batcher(run, max_batch_size=8, max_delay_s=0.01, queue_limit=20,
                   on_batch=sizes.append)


def test_batcher_batches_and_fails_only_the_bad_request() -> None:
    batches: list[list[int]] = []
    sizes: list[int] = []

    async def main() -> list[object]:
        b = doubler(batches, sizes)
        far = time.monotonic() + 5
        return await asyncio.gather(*(b.submit(p, 1, far) for p in [1, 2, -3, 4]),
                                    return_exceptions=True)

    results = asyncio.run(main())
    assert results[:2] == [2, 4] and results[3] == 8
    assert isinstance(results[2], InputError)
    assert batches[0] == [1, 2, -3, 4] and sizes[0] == 4  # one batch, then each alone


def test_batcher_refuses_past_its_queue_limit_and_deadlines() -> None:
    async def main() -> None:
        b = doubler([], [])
        far = time.monotonic() + 5
        with pytest.raises(OverloadedError, match="queue full"):
            await b.submit(1, 21, far)
        with pytest.raises(DeadlineExceededError):
            await b.submit(1, 1, time.monotonic() + 0.001)

    asyncio.run(main())


@pytest.mark.parametrize("inline", [True, False])
def test_requests_whose_deadline_passes_behind_a_slow_batch_fail_without_running(
        inline: bool) -> None:
    ran: list[list[int]] = []

    def slow(payloads: list[int]) -> list[int]:
        ran.append(list(payloads))
        time.sleep(0.2)
        return payloads

    async def main() -> list[object]:
        b = Batcher(slow, max_batch_size=1, max_delay_s=0.05, queue_limit=20, inline=inline)
        now = time.monotonic()
        first = asyncio.ensure_future(b.submit(1, 1, now + 5))
        await asyncio.sleep(0.01)  # the first batch is running
        rest = [b.submit(p, 1, now + 0.1) for p in (2, 3)] + [b.submit(4, 1, now + 5)]
        started = time.monotonic()
        out = await asyncio.gather(first, *rest, return_exceptions=True)
        assert time.monotonic() - started < 1.0
        return out

    results = asyncio.run(main())
    assert results[0] == 1 and results[3] == 4
    assert all(isinstance(r, DeadlineExceededError) for r in results[1:3])
    assert ran == [[1], [4]]  # the expired requests never reached the model


def test_a_batch_never_waits_to_fill_past_a_waiting_request_deadline() -> None:
    async def main() -> float:
        # a replica under load (another request in flight) waits up to the delay to fill
        admission = AdmissionPolicy(8)
        admission.in_flight = 3
        b = Batcher(lambda p: p, max_batch_size=8, max_delay_s=5.0, queue_limit=20,
                    admission=admission)
        started = time.monotonic()
        # run at its deadline, or failed at it: either way not after 5 s
        with contextlib.suppress(DeadlineExceededError):
            assert await b.submit(1, 1, started + 0.1) == 1
        return time.monotonic() - started

    assert asyncio.run(main()) < 1.0


def test_lru_ttl_cache_expires_and_evicts() -> None:
    cache = LruTtlCache(size=2, ttl_s=0.05)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.get("a")
    cache.put("c", 3)  # evicts b, the least recently used
    assert cache.get("b") is None and cache.get("a") == 1
    time.sleep(0.06)
    assert cache.get("a") is None
    assert cache.get("a", allow_stale=True) == 1  # what the last-good fallback reads


@pytest.mark.parametrize(("canary", "why"), [
    ({"calls": 10, "errors": 0, "seconds": 0.01, "score": 5, "scored": 10}, None),
    ({"calls": 3, "errors": 3}, None),  # too few requests to judge
    ({"calls": 10, "errors": 2, "seconds": 0.01}, "error rate"),
    ({"calls": 10, "errors": 0, "seconds": 1.0}, "latency"),
    ({"calls": 10, "errors": 0, "seconds": 0.01, "score": 9, "scored": 10}, "score"),
])
def test_canary_verdicts(canary: dict[str, float], why: str | None) -> None:
    guard = GuardSpec(min_requests=5, max_error_rate=0.1, max_mean_latency_ms=20,
                      max_score_shift=0.2)
    stable: dict[str, float] = {"calls": 100, "score": 50, "scored": 100}
    verdict = canary_verdict(guard, stable, canary)
    assert (verdict is None) if why is None else (verdict is not None and why in verdict)


def test_v2_binary_round_trip_including_bytes() -> None:
    x = np.arange(6, dtype=np.int64).reshape(2, 3)
    words = np.array([b"red", b"shoes"], dtype=object)
    outputs = {"x": x, "w": words}
    body, headers = encode_response("m", 1, outputs, {"": True}, "id-1")
    head = int(headers["Inference-Header-Content-Length"])
    request = body[:head].replace(b'"outputs"', b'"inputs"')
    inputs, wanted, _ = decode_request(request + body[head:], str(len(request)))
    np.testing.assert_array_equal(inputs["x"], x)
    assert list(inputs["w"]) == [b"red", b"shoes"] and wanted == {"": False}


def double(payloads: list[int]) -> list[int]:
    return [2 * p for p in payloads]


def test_an_idle_model_runs_a_lone_request_without_waiting_for_the_delay() -> None:
    async def main() -> tuple[list[float], list[int]]:
        admission = AdmissionPolicy(limit=64)
        sizes: list[int] = []
        b: Batcher[int, int] = Batcher(double, max_batch_size=8, max_delay_s=0.5,
                    queue_limit=20, on_batch=sizes.append, admission=admission)
        took = []
        for p in range(3):  # one client, one request at a time, as at concurrency 1
            assert admission.admit()
            start = time.monotonic()
            assert await b.submit(p, 1, time.monotonic() + 5) == 2 * p
            took.append(time.monotonic() - start)
            admission.release()
        return took, sizes

    took, sizes = asyncio.run(main())
    assert max(took) < 0.25, took  # the delay is 0.5 s: none of it was paid
    assert sizes == [1, 1, 1]


def trickle(arrivals: list[float], connections: int | None, delay_s: float,
            max_batch_size: int = 64) -> tuple[list[int], float]:
    """Requests that reach a batcher at ``arrivals`` (seconds), each admitted first as by the
    HTTP entry: the sizes of the model calls and how long the first request took."""
    async def main() -> tuple[list[int], float]:
        admission = AdmissionPolicy(limit=64)
        admission.connections = connections
        sizes: list[int] = []
        b: Batcher[int, int] = Batcher(double, max_batch_size=max_batch_size,
                                       max_delay_s=delay_s, queue_limit=100,
                                       on_batch=sizes.append, admission=admission)
        for _ in arrivals:
            assert admission.admit()

        async def request(p: int, at: float) -> float:
            await asyncio.sleep(at)  # reading and parsing the body
            assert await b.submit(p, 1, time.monotonic() + 5) == 2 * p
            return time.monotonic()

        start = time.monotonic()
        done = await asyncio.gather(*(request(p, at) for p, at in enumerate(arrivals)))
        return sizes, done[0] - start

    return asyncio.run(main())


def test_under_load_a_batch_waits_while_requests_keep_arriving() -> None:
    # five requests 10 ms apart; a quarter of the 1 s delay is far longer than the gaps
    sizes, took = trickle([0.01 * p for p in range(5)], connections=None, delay_s=1.0)
    assert sizes == [5]  # one model call: the first request waited for the others
    assert 0.04 + 0.25 <= took < 0.9  # ran once none arrived for a quarter of the delay


def test_under_load_a_batch_never_waits_past_the_delay() -> None:
    # a request every 40 ms, each gap under the quiet period (75 ms): the delay (0.3 s) ends it
    sizes, took = trickle([0.04 * p for p in range(12)], connections=None, delay_s=0.3)
    assert 1 < sizes[0] < 12 and sum(sizes) == 12
    assert 0.3 <= took < 0.45


def test_a_passed_deadline_of_an_earlier_batch_does_not_cut_a_later_wait() -> None:
    async def main() -> list[int]:
        admission = AdmissionPolicy(limit=64)
        sizes: list[int] = []
        b: Batcher[int, int] = Batcher(double, max_batch_size=64, max_delay_s=0.4,
                                       queue_limit=100, on_batch=sizes.append,
                                       admission=admission)
        assert admission.admit()  # a lone request with a short deadline runs at once
        assert await b.submit(0, 1, time.monotonic() + 0.05) == 0
        admission.release()
        await asyncio.sleep(0.1)  # its deadline has passed; it is answered and gone

        async def request(p: int) -> int:
            await asyncio.sleep(0.01 * p)
            return await b.submit(p, 1, time.monotonic() + 5)

        for _ in range(3):
            assert admission.admit()
        assert await asyncio.gather(*(request(p) for p in range(1, 4))) == [2, 4, 6]
        return sizes

    assert asyncio.run(main()) == [1, 3]  # the three under load were batched together


def test_a_batch_runs_once_every_connection_has_its_request_waiting() -> None:
    # five connections, each with its request in the batcher: no other request can come
    sizes, took = trickle([0.01 * p for p in range(5)], connections=5, delay_s=1.0)
    assert sizes == [5] and took < 0.2
    # a sixth connection could still send one: the batch waits for the quiet period
    sizes, took = trickle([0.01 * p for p in range(5)], connections=6, delay_s=1.0)
    assert sizes == [5] and took >= 0.29


def test_admission_refuses_past_its_limit_until_a_slot_is_released() -> None:
    admission = AdmissionPolicy(limit=2)
    assert admission.admit() and admission.admit()
    assert not admission.admit() and admission.in_flight == 2
    admission.release()
    assert admission.admit()
