"""Rotation of the feedback and impression logs: every event stored once, read once, even with
several writer processes, a reader following along, and a writer killed mid-stream."""

from __future__ import annotations

import collections
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from conftest import eval_like_rows

from shopserve.monitor.eventlogs import (
    FeedbackReader,
    ImpressionLog,
    ImpressionReader,
    closed_segments,
)
from shopserve.testing import ShopserveProcess

WRITER = """
import sys
from pathlib import Path
from shopserve.monitor.eventlogs import FeedbackLog
from shopserve.monitor.feedback import Feedback
log = FeedbackLog(Path(sys.argv[1]), int(sys.argv[2]))
for i in range(int(sys.argv[4])):
    log.append(Feedback(f"{sys.argv[3]}-{i}", f"p{i % 7}", "click").line())
    print(i, flush=True)  # acknowledged: written and fsync'd
"""


def request_ids(lines: list[bytes]) -> list[str]:
    return [json.loads(line)["request_id"] for line in lines]


def all_lines(directory: Path) -> list[bytes]:
    files = [*closed_segments(directory), directory / "feedback.jsonl"]
    return [line for f in files if f.exists() for line in f.read_bytes().splitlines()]


def test_writer_processes_and_a_reader_see_every_event_once(tmp_path: Path) -> None:
    segment, per_writer = 1500, 300
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(segment),
                                 f"w{k}", str(per_writer)], stdout=subprocess.PIPE, text=True)
               for k in range(4)]
    reader, read = FeedbackReader(tmp_path), []
    victim = writers[3]
    assert victim.stdout is not None
    # let the victim acknowledge some events, then kill it mid-stream (often mid-rotation)
    printed = [victim.stdout.readline() for _ in range(40)]
    victim.send_signal(signal.SIGKILL)
    while any(w.poll() is None for w in writers[:3]):
        read += reader.lines()  # reading along while segments are renamed under it
        time.sleep(0.005)
    printed += victim.communicate(timeout=10)[0].splitlines()
    acked = {f"w{k}-{i}" for k in range(3) for i in range(per_writer)}
    acked |= {f"w3-{int(line)}" for line in printed if line.strip()}
    for w in writers[:3]:
        w.communicate(timeout=30)
        assert w.returncode == 0
    read += reader.lines()
    counts = collections.Counter(request_ids(read))
    assert max(counts.values()) == 1  # nothing read twice
    assert acked <= set(counts)  # nothing acknowledged was lost
    assert collections.Counter(request_ids(all_lines(tmp_path))) == counts
    segments = closed_segments(tmp_path)
    assert len(segments) >= 20  # ~60 bytes a line: rotated every ~25 events
    assert all(s.stat().st_size <= segment for s in segments)
    assert [int(s.name[9:15]) for s in segments] == list(range(1, len(segments) + 1))
    # a fresh reader (a replica started later) reads the same events once
    assert collections.Counter(request_ids(FeedbackReader(tmp_path).lines())) == counts


def test_old_feedback_segments_are_deleted_only_when_asked(tmp_path: Path) -> None:
    from shopserve.monitor.eventlogs import FeedbackLog
    from shopserve.monitor.feedback import Feedback

    kept, trimmed = FeedbackLog(tmp_path / "kept", 400), FeedbackLog(tmp_path / "trim", 400, 2)
    for i in range(60):
        for log in (kept, trimmed):
            log.append(Feedback(f"r{i}", "p", "purchase").line())
    assert len(request_ids(all_lines(tmp_path / "kept"))) == 60
    names = [s.name for s in closed_segments(tmp_path / "trim")]
    assert len(names) == 2 and names[-1] == f"feedback-{trimmed.rotations:06d}.jsonl"


def test_impression_segments_rotate_and_old_ones_are_deleted(tmp_path: Path) -> None:
    log = ImpressionLog(tmp_path, segment_bytes=1000, keep_bytes=3000)
    reader, seen = ImpressionReader(tmp_path), []
    for i in range(200):
        log.record(f"r{i}", "ctr", 1, [f"p{j}" for j in range(5)])
        if i % 4 == 3:
            log.flush()
            seen += reader.lines()
    log.flush()
    seen += reader.lines()
    assert [json.loads(line)[0] for line in seen] == [f"r{i}" for i in range(200)]
    files = sorted(tmp_path.glob("*.jsonl"))
    assert log.seq >= 10 and len(files) < log.seq  # rotated, and the oldest deleted
    assert sum(f.stat().st_size for f in files) <= 3000 + 1000
    # a segment deleted while still written: the next flush starts a new one, not the old name
    log.path.unlink()
    log.record("late", "ctr", 1, ["p0"])
    log.flush()
    assert log.path.exists() and json.loads(reader.lines()[0])[0] == "late"


def status(client: httpx.Client, url: str) -> dict[str, Any]:
    for _ in range(3):  # a connection to a replica the test killed is reset once
        try:
            data: dict[str, Any] = client.get(url + "/dashboard/status.json").json()
            return data
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("no replica answered the status")


@pytest.fixture
def fresh_home(monitor_home: Path, tmp_path: Path) -> Path:
    """The registry of the shared home, without its monitoring files."""
    home = tmp_path / "home"
    shutil.copytree(monitor_home, home, ignore=shutil.ignore_patterns("monitor", "drills"))
    return home


def test_a_service_rotates_its_logs_and_counts_each_event_once(fresh_home: Path,
                                                               tmp_path: Path) -> None:
    env = {"SHOPSERVE_FEEDBACK_SEGMENT_BYTES": "1200", "SHOPSERVE_IMPRESSIONS_SEGMENT_BYTES":
           "1500", "SHOPSERVE_DRIFT_SAMPLE": "0"}
    spec = {"home": str(fresh_home), "replicas": 2, "zones": ["a", "b"],
            "models": [{"ref": "ctr@1", "name": "ctr", "cache": False}]}
    acked: list[tuple[str, str]] = []
    with ShopserveProcess.from_spec(spec, tmp_path, env=env) as proc, \
            httpx.Client(timeout=10) as client:
        shown = []
        for i in range(30):
            if i % 10 == 9:
                time.sleep(1.1)  # a replica flushes impressions once a second: new segments
            r = client.post(proc.url + "/v1/rank", json={"model": "ctr", "candidates":
                                                          eval_like_rows(4, seed=200 + i)})
            shown.append((r.headers["X-Request-ID"], eval_like_rows(4, seed=200 + i)))
        deadline = time.monotonic() + 10  # each replica flushes its impressions every second
        while status(client, proc.url)["feedback"].get("ctr@1", {}).get("impressions") != 30:
            assert time.monotonic() < deadline
            time.sleep(0.3)
        assert proc.process is not None
        replicas = psutil.Process(proc.process.pid).children()
        assert len(replicas) == 2
        lock = threading.Lock()

        def post(part: int) -> None:
            with httpx.Client(timeout=10) as mine:
                for rid, rows in shown[part::3]:
                    for row in rows[:3]:
                        try:
                            r = mine.post(proc.url + "/v1/feedback", json={
                                "request_id": rid, "product_id": row["product_id"],
                                "event": "click"})
                        except httpx.TransportError:
                            continue  # the killed replica's connection: maybe stored
                        if r.status_code == 200:
                            with lock:
                                acked.append((rid, str(row["product_id"])))

        threads = [threading.Thread(target=post, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        replicas[0].send_signal(signal.SIGKILL)  # mid-stream, likely mid-rotation
        for t in threads:
            t.join(60)
        stored = [(json.loads(line)["request_id"], json.loads(line)["product_id"])
                  for line in all_lines(fresh_home / "monitor")]
        assert len(stored) == len(set(stored))  # each stored once
        assert set(acked) <= set(stored)  # every 200 is on disk
        assert len(closed_segments(fresh_home / "monitor")) >= 5

        deadline = time.monotonic() + 20
        while (s := status(client, proc.url))["feedback_events"] != len(stored) \
                and time.monotonic() < deadline:
            time.sleep(0.5)
        assert s["feedback_events"] == len(stored)
        quality = s["feedback"]["ctr@1"]
        assert quality["clicks"] == len(stored)
        assert quality["requests_with_feedback"] == len({rid for rid, _ in stored})
        assert quality["impressions"] == 30
    assert len(list((fresh_home / "monitor" / "impressions").glob("*.jsonl"))) >= 2
