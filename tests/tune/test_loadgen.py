"""The load generator against a real shopserve server: counts, rates, errors, bounds."""

from __future__ import annotations

import time

import orjson
import pytest

from shopserve.errors import UsageError
from shopserve.loadgen import LoadMode, load_spec, run_load

ROW = {**{f"I{i}": float(i) for i in range(1, 14)}, **{f"C{i}": "a" for i in range(1, 27)}}


def bodies(n: int) -> tuple[bytes, ...]:
    return tuple(orjson.dumps({"candidates": [{**ROW, "C2": f"k{i}"}]}) for i in range(n))


def test_closed_loop_answers_and_counts_matches(ctr_server: str) -> None:
    report = run_load(load_spec(url=ctr_server, path="/v1/rank", bodies=bodies(5),
                                connections=4, duration_s=0.6, match=b'"cached":true'))
    assert report.ok > 20 and report.errors == {} and report.rps > 0
    assert report.p50_ms <= report.p99_ms <= report.p999_ms <= report.max_ms
    assert 0 < report.matched <= report.ok - 5 + 4  # only 5 distinct bodies: the rest hit


def test_open_loop_sends_at_the_rate_and_replays_offsets(ctr_server: str) -> None:
    report = run_load(load_spec(url=ctr_server, path="/v1/rank", bodies=bodies(50),
                                mode=LoadMode.OPEN, rate=100, duration_s=1.0))
    assert 95 <= report.sent <= 101 and report.ok == report.sent
    assert report.offered_rps == 100
    start = time.monotonic()
    replay = run_load(load_spec(url=ctr_server, path="/v1/rank", bodies=bodies(3),
                                mode=LoadMode.OPEN, offsets_s=(0.0, 0.2, 0.2, 0.5)))
    assert replay.sent == 4 and replay.ok == 4
    assert 0.5 <= time.monotonic() - start < 3


def test_errors_are_counted_by_status_and_connection(ctr_server: str) -> None:
    bad = run_load(load_spec(url=ctr_server, path="/v1/nope", bodies=(b"{}",),
                             connections=2, max_requests=10, duration_s=5))
    assert bad.sent == 10 and bad.ok == 0 and bad.errors == {"http 404": 10}
    refused = run_load(load_spec(url="http://127.0.0.1:9", bodies=(b"{}",), connections=1,
                                 max_requests=3, duration_s=5, timeout_s=1))
    assert refused.ok == 0 and sum(refused.errors.values()) == 3


@pytest.mark.parametrize(("values", "named"), [
    ({"url": "localhost:80", "bodies": (b"",)}, "url"),
    ({"url": "http://127.0.0.1:1", "bodies": ()}, "bodies"),
    ({"url": "http://127.0.0.1:1", "bodies": (b"",), "mode": "open"}, "rate"),
    ({"url": "http://127.0.0.1:1", "bodies": (b"",), "mode": "open",
      "offsets_s": (1.0, 0.5)}, "offsets_s"),
])
def test_bad_specs_name_the_field(values: dict[str, object], named: str) -> None:
    with pytest.raises(UsageError, match=named):
        load_spec(**values)
