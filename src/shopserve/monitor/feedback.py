"""Online quality from feedback: feedback events, and their join with the impressions each
replica served into live CTR and NDCG per model version (the logs are in ``eventlogs.py``).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from shopserve.errors import InputError
from shopserve.monitor.eventlogs import FeedbackReader, ImpressionReader

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

    def line(self) -> bytes:
        """The record as it is appended to the feedback log."""
        return orjson.dumps({"ts": round(time.time(), 3), "request_id": self.request_id,
                             "product_id": self.product_id, "event": self.event}) + b"\n"


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


class QualityTracker:
    """Joins feedback to impressions (any replica's) into CTR and NDCG@10 per model version."""

    def __init__(self, feedback_dir: Path, impressions_dir: Path) -> None:
        self.feedback = FeedbackReader(feedback_dir)  # every retained segment, in order
        self.impressions = ImpressionReader(impressions_dir)
        self.shown: dict[str, tuple[str, int, list[str]]] = {}
        self.counts: dict[tuple[str, int], int] = defaultdict(int)
        self.events: dict[str, dict[str, int]] = {}  # request id -> product -> best grade
        self.unjoined = 0
        self.events_read = 0  # feedback lines joined, each once (across rotations too)
        self._lock = threading.Lock()

    def refresh(self) -> dict[str, dict[str, Any]]:
        """``{"model@version": {impressions, ctr, ndcg, ...}}`` from everything written so far."""
        with self._lock:
            self._read_impressions()
            for line in self.feedback.lines():
                try:
                    rec = orjson.loads(line)
                    event = EVENTS[rec["event"]]
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut short by a crash (never acknowledged)
                self.events_read += 1
                per = self.events.setdefault(rec["request_id"], {})
                per[rec["product_id"]] = max(per.get(rec["product_id"], 0), event)
            return self._summary()

    def _read_impressions(self) -> None:
        for line in self.impressions.lines():
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
