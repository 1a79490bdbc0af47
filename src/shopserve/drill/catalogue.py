"""The built-in catalogue: the drill files shipped inside the package (``drill/catalog/``, which
``drills/`` at the top of the source tree points at), found as well when installed from a wheel."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from shopserve.drill.spec import DrillSpec, load_drill
from shopserve.errors import NotFoundError


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    path: Path
    drill: DrillSpec


def drills_dir() -> Path:
    """``SHOPSERVE_DRILLS`` or the catalogue shipped as package data."""
    env = os.environ.get("SHOPSERVE_DRILLS")
    path = Path(env) if env else Path(__file__).resolve().with_name("catalog")
    if not path.is_dir():
        raise NotFoundError(f"no drill catalogue at {path}; set SHOPSERVE_DRILLS")
    return path


def catalogue() -> list[CatalogueEntry]:
    return [CatalogueEntry(p.stem, p, load_drill(p)) for p in sorted(drills_dir().glob("*.yaml"))]


def resolve(name_or_path: str) -> Path:
    """A drill file by path, or by catalogue name (``replica-crash``)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    candidate = drills_dir() / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    raise NotFoundError(f"no drill file {name_or_path!r} and no catalogue drill of that name; "
                        "see `shopserve drill list`")
