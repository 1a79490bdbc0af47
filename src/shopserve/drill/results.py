"""Checked expectations (one line of the verdict each) and the lifecycle of a drill."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any


class DrillStatus(enum.StrEnum):
    """Chaos Toolkit's journal statuses."""

    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"
    INTERRUPTED = "interrupted"


class Verdict(enum.IntEnum):
    """The exit code of ``shopserve drill run``."""

    PASSED = 0
    DEVIATED = 3
    ROLLBACK_FAILED = 4


@dataclass(frozen=True)
class Check:
    """One hypothesis: what was expected, what was seen, and whether it held."""

    name: str
    ok: bool
    observed: Any
    expected: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
