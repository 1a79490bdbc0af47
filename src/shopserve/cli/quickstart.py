"""`shopserve quickstart`: the whole path on the demo shop."""

from __future__ import annotations


def quickstart() -> None:
    """Demo shop → model → optimized → registered → served."""
