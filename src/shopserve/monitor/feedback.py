"""Online quality from feedback: a durable (fsync'd, append-only) feedback log, the impressions
each replica served, and their join into live CTR and NDCG per model version.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from shopserve.errors import InputError

EVENTS = {"click": 1, "purchase": 2}  # graded relevance of an event, for NDCG
NDCG_K = 10
MAX_IMPRESSIONS = 500_000  # joined in memory; older request ids are forgotten
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass(frozen=True)
class Feedback:
    """A click or purchase of one product returned by one request."""

    request_id: str
    product_id: str
    event: str

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Feedback:
        rid, pid, event = data.get("request_id"), data.get("product_id"), data.get("event")
        if not isinstance(rid, str) or not REQUEST_ID.match(rid):
            raise InputError("'request_id' must be the X-Request-ID of a response (1-128 "
                             "letters, digits or ._:-)")
        if not isinstance(pid, str) or not 0 < len(pid) <= 256:
            raise InputError("'product_id' must be a product id string (1-256 characters)")
        if event not in EVENTS:
            raise InputError(f"'event' must be one of {sorted(EVENTS)}, got {event!r}")
        return cls(rid, pid, str(event))


class FeedbackLog:
    """Append-only JSON lines; each append is written and fsync'd before it returns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    def append(self, item: Feedback) -> None:
        line = orjson.dumps({"ts": round(time.time(), 3), "request_id": item.request_id,
                             "product_id": item.product_id, "event": item.event}) + b"\n"
        with self._lock:
            os.write(self._fd, line)  # one write with O_APPEND: lines never interleave
            os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


class ImpressionLog:
    """What this replica returned, by request id; buffered and flushed every moment."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{os.getpid()}-{int(time.time())}.jsonl"
        self.buffer: list[bytes] = []

    def record(self, request_id: str, model: str, version: int, products: list[str]) -> None:
        self.buffer.append(orjson.dumps([request_id, model, version, products]) + b"\n")

    def flush(self) -> None:
        if self.buffer:
            data, self.buffer = b"".join(self.buffer), []
            with self.path.open("ab") as fh:
                fh.write(data)


@dataclass
class VersionQuality:
    impressions: int = 0
    clicked: int = 0  # requests with at least one event
    clicks: int = 0
    purchases: int = 0
    ndcg_sum: float = 0.0

    def to_json(self) -> dict[str, Any]:
        ctr = self.clicked / self.impressions if self.impressions else 0.0
        ndcg = self.ndcg_sum / self.clicked if self.clicked else 0.0
        return {"impressions": self.impressions, "requests_with_feedback": self.clicked,
                "clicks": self.clicks, "purchases": self.purchases, "ctr": round(ctr, 6),
                "ndcg": round(ndcg, 6)}


class _Tail:
    """Complete new lines of a growing file, read from where the last call stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def lines(self) -> list[bytes]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1
        self.offset += end
        return data[:end].splitlines()


class QualityTracker:
    """Joins feedback to impressions (any replica's) into CTR and NDCG@10 per model version."""

    def __init__(self, feedback_path: Path, impressions_dir: Path) -> None:
        self.feedback = _Tail(feedback_path)
        self.impressions_dir = impressions_dir
        self.tails: dict[Path, _Tail] = {}
        self.shown: dict[str, tuple[str, int, list[str]]] = {}
        self.counts: dict[tuple[str, int], int] = defaultdict(int)
        self.events: dict[str, dict[str, int]] = {}  # request id -> product -> best grade
        self.unjoined = 0
        self._lock = threading.Lock()

    def refresh(self) -> dict[str, dict[str, Any]]:
        """``{"model@version": {impressions, ctr, ndcg, ...}}`` from everything written so far."""
        with self._lock:
            self._read_impressions()
            for line in self.feedback.lines():
                try:
                    rec = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                per = self.events.setdefault(rec["request_id"], {})
                per[rec["product_id"]] = max(per.get(rec["product_id"], 0), EVENTS[rec["event"]])
            return self._summary()

    def _read_impressions(self) -> None:
        for path in sorted(self.impressions_dir.glob("*.jsonl")):
            tail = self.tails.setdefault(path, _Tail(path))
            for line in tail.lines():
                try:
                    rid, model, version, products = orjson.loads(line)
                except (orjson.JSONDecodeError, ValueError):
                    continue
                self.shown[rid] = (model, int(version), products)
                self.counts[(model, int(version))] += 1
                if len(self.shown) > MAX_IMPRESSIONS:
                    self.shown.pop(next(iter(self.shown)))

    def _summary(self) -> dict[str, dict[str, Any]]:
        out: dict[tuple[str, int], VersionQuality] = {
            key: VersionQuality(impressions=n) for key, n in self.counts.items()}
        self.unjoined = 0
        for rid, grades in self.events.items():
            shown = self.shown.get(rid)
            if shown is None:
                self.unjoined += 1
                continue
            q = out.setdefault((shown[0], shown[1]), VersionQuality())
            q.clicked += 1
            q.clicks += sum(1 for g in grades.values() if g >= 1)
            q.purchases += sum(1 for g in grades.values() if g >= 2)
            q.ndcg_sum += ndcg(shown[2], grades)
        return {f"{m}@{v}": q.to_json() for (m, v), q in sorted(out.items())}


def ndcg(products: list[str], grades: dict[str, int], k: int = NDCG_K) -> float:
    """NDCG@k of the order shown, with each product's feedback grade as its gain (2^g - 1)."""
    gains = [(2 ** grades.get(p, 0)) - 1 for p in products[:k]]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    ideal = sorted(((2 ** g) - 1 for p, g in grades.items() if p in products), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0
