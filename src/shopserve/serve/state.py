"""The control state the supervisor shares with its replicas through one small JSON file.

Written atomically (temp file + rename); a replica reads it at start (which versions to load)
and whenever it changes (canary weights), so a restarted replica never serves stale routing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from shopserve.serve.dataplane import DataPlane


class ControlState(BaseModel):
    model_config = ConfigDict(frozen=True)

    refs: dict[str, str] = Field(default_factory=dict)  # endpoint -> stable ref (after deploys)
    canary_weights: dict[str, float] = Field(default_factory=dict)
    events: list[str] = Field(default_factory=list)  # what the supervisor did, newest last

    @classmethod
    def read(cls, path: Path) -> ControlState:
        try:
            return cls.model_validate_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()

    def write(self, path: Path) -> None:
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(self.model_dump_json(), encoding="utf-8")
        os.replace(tmp, path)

    def apply_weights(self, plane: DataPlane) -> None:
        for name, weight in self.canary_weights.items():
            endpoint = plane.endpoints.get(name)
            if endpoint is not None:
                endpoint.canary_weight = weight
