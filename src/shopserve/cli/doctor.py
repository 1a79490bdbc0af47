"""`shopserve doctor`: check this machine before a deployment."""

from __future__ import annotations


def doctor() -> None:
    """Check this machine before a deployment."""
