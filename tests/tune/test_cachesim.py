"""The cache simulation against a brute-force reference, and the TTL edge cases users rely on."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from shopserve.tune import KeyCounts, LruTtlSimulator


def brute_force(requests: list[tuple[str, float]], size: int | None, ttl: float) -> int:
    """A list of [key, expires, last used]; the least recently used entry is evicted."""
    entries: list[list[object]] = []
    hits = 0
    for tick, (key, now) in enumerate(requests):
        found = next((e for e in entries if e[0] == key), None)
        if found is not None and float(found[1]) >= now:  # type: ignore[arg-type]
            found[2] = tick
            hits += 1
            continue
        if size == 0:
            continue
        if found is None:
            entries.append([key, now + ttl, tick])
        else:
            found[1], found[2] = now + ttl, tick
        if size is not None and len(entries) > size:
            entries.remove(min(entries, key=lambda e: int(e[2])))  # type: ignore[call-overload]
    return hits


@st.composite
def logs(draw: st.DrawFn) -> list[tuple[str, float]]:
    keys = draw(st.lists(st.sampled_from("abcdefg"), min_size=1, max_size=80))
    gaps = draw(st.lists(st.integers(0, 3), min_size=len(keys), max_size=len(keys)))
    return list(zip(keys, itertools.accumulate(float(g) for g in gaps), strict=True))


@settings(max_examples=300, deadline=None)
@given(logs(), st.one_of(st.none(), st.integers(0, 6)), st.integers(1, 6), st.integers(1, 40))
def test_matches_brute_force(log: list[tuple[str, float]], size: int | None, ttl: int,
                             batch: int) -> None:
    sim = LruTtlSimulator(size, float(ttl))
    for start in range(0, len(log), batch):  # batching must not change the answer
        part = log[start:start + batch]
        sim.feed([k for k, _ in part], [t for _, t in part])
    assert sim.requests == len(log)
    assert sim.hits == brute_force(log, size, float(ttl))


def run(requests: list[tuple[str, float]], size: int | None, ttl: float) -> list[bool]:
    sim = LruTtlSimulator(size, ttl)
    out = []
    for key, now in requests:
        before = sim.hits
        sim.feed([key], [now])
        out.append(sim.hits > before)
    return out


def test_an_answer_is_fresh_up_to_and_including_its_ttl() -> None:
    assert run([("q", 0.0), ("q", 10.0), ("q", 10.001)], None, 10.0) == [False, True, False]


def test_an_expired_answer_is_a_miss_and_is_stored_afresh() -> None:
    # miss at 0, hit at 5, expired at 11 (stored again until 21), hit at 21, miss at 21.5
    assert run([("q", 0), ("q", 5), ("q", 11), ("q", 21), ("q", 21.5)], None, 10.0) == \
        [False, True, False, True, False]


def test_a_hit_does_not_extend_the_ttl() -> None:
    assert run([("q", 0), ("q", 9), ("q", 11)], None, 10.0) == [False, True, False]


def test_an_expired_entry_keeps_its_place_until_evicted() -> None:
    # like the serving cache, expired answers are not purged: at 10.5 'a' has expired but was
    # used more recently than 'b', so storing 'c' evicts the still-fresh 'b'
    got = run([("a", 0), ("b", 1), ("a", 2), ("c", 10.5), ("b", 10.6)], 2, 10.0)
    assert got == [False, False, True, False, False]


def test_size_zero_never_hits_and_lru_evicts_the_oldest_use() -> None:
    assert run([("q", 0), ("q", 0)], 0, 60.0) == [False, False]
    assert run([("a", 0), ("b", 1), ("a", 2), ("c", 3), ("a", 4), ("b", 5)], 2, 60.0) == \
        [False, False, True, False, True, False]


def test_top_one_percent_share() -> None:
    counts = KeyCounts()
    counts.feed(["hot"] * 900 + [f"k{i}" for i in range(100)])
    top, share = counts.top_share(0.01)
    assert top == 2 and share == 0.901
    assert KeyCounts().top_share() == (0, 0.0)
