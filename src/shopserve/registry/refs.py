"""Model names and references: ``name``, ``name@3``, ``name@alias``, ``name@latest``.

Also the rules for artifact file names, so that no stored name can escape a directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shopserve.errors import UsageError

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
ALIAS_PATTERN = NAME_PATTERN
ARTIFACT_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
LATEST = "latest"
MAX_ARTIFACT_NAME = 255


@dataclass(frozen=True)
class Ref:
    """A parsed reference. ``version`` and ``alias`` both ``None`` means the latest READY one."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@{self.version}"
        return f"{self.name}@{self.alias or LATEST}"


def validate_name(name: str) -> str:
    """Return ``name`` when it is a valid model name, else raise ``UsageError``."""
    if not NAME_PATTERN.fullmatch(name):
        raise UsageError(
            f"invalid model name {name!r}: expected lowercase letters, digits, '_' or '-', "
            "starting with a letter or digit, at most 64 characters"
        )
    return name


def validate_alias(alias: str) -> str:
    """Return ``alias`` when it may be assigned; ``latest`` and numbers are reserved."""
    if not ALIAS_PATTERN.fullmatch(alias) or alias == LATEST or alias.isdigit():
        raise UsageError(
            f"invalid alias {alias!r}: expected lowercase letters, digits, '_' or '-' "
            f"(not a number and not {LATEST!r})"
        )
    return alias


def parse_ref(ref: str) -> Ref:
    """Parse ``name``, ``name@3``, ``name@alias`` or ``name@latest``."""
    name, sep, selector = ref.partition("@")
    validate_name(name)
    if not sep or selector == LATEST:
        return Ref(name)
    if selector.isdigit():
        version = int(selector)
        if version < 1:
            raise UsageError(f"invalid reference {ref!r}: versions start at 1")
        return Ref(name, version=version)
    if not ALIAS_PATTERN.fullmatch(selector):
        raise UsageError(
            f"invalid reference {ref!r}: expected name, name@<version>, name@<alias> or name@latest"
        )
    return Ref(name, alias=selector)


def validate_artifact_name(name: str) -> str:
    """An artifact name is a relative path of plain segments: no ``..``, no absolute path."""
    segments = name.split("/")
    if len(name) > MAX_ARTIFACT_NAME or not all(ARTIFACT_SEGMENT.fullmatch(s) for s in segments):
        raise UsageError(
            f"invalid artifact name {name!r}: expected '/'-separated segments of letters, "
            "digits, '_', '.' or '-', none starting with '.', at most 255 characters"
        )
    return name
