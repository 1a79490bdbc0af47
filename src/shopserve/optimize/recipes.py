"""Recipes: named, pluggable rewrites of an ONNX graph (``apply(graph_path, ctx) -> new path``).

A recipe spec on the command line is ``name`` or ``name:key=value,key=value``; ``a+b`` chains
recipes into one variant (``graph+int8-static``). ``register_recipe`` adds a user's own class.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import onnx
from pydantic import BaseModel, ConfigDict, ValidationError

from shopserve.config import describe_validation_error
from shopserve.errors import UsageError
from shopserve.runtime.onnx import Device, SessionSettings


class NoParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class RecipeContext:
    """What a recipe may use besides its graph: a scratch folder, real inputs, the target.

    ``calibration`` returns batches of real model inputs (drawn lazily: only some recipes need
    them); ``within_budget`` evaluates a candidate graph against the quality gate and returns the
    reason it fails, or ``None`` when it passes.
    """

    work_dir: Path
    calibration: Callable[[], Sequence[dict[str, np.ndarray]]]
    device: Device = Device.CPU
    within_budget: Callable[[Path], str | None] | None = None
    torch_source: Path | None = None

    @property
    def session(self) -> SessionSettings:
        return SessionSettings(device=self.device)

    def path(self, stem: str) -> Path:
        """A fresh file in the scratch folder for a step's output."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        n = len(list(self.work_dir.glob("*.onnx")))
        return self.work_dir / f"{n:02d}-{stem}.onnx"


class Recipe(abc.ABC):
    """One graph rewrite. Subclasses set ``name``, ``summary`` and, with options, ``Params``."""

    name: ClassVar[str]
    summary: ClassVar[str]
    Params: ClassVar[type[BaseModel]] = NoParams

    def __init__(self, params: BaseModel | None = None) -> None:
        self.params = params if params is not None else self.Params()

    def check(self, model: onnx.ModelProto, ctx: RecipeContext) -> None:  # noqa: B027
        """Raise ``UsageError`` naming why this recipe does not apply to ``model``."""

    @abc.abstractmethod
    def apply(self, graph_path: Path, ctx: RecipeContext) -> Path:
        """Write the rewritten graph to a new file and return its path."""

    def describe(self) -> dict[str, Any]:
        return self.params.model_dump(mode="json")

    def refuse(self, graph: str, why: str) -> UsageError:
        return UsageError(f"recipe {self.name!r} does not apply to {graph}: {why}")


RECIPES: dict[str, type[Recipe]] = {}
R = TypeVar("R", bound=type[Recipe])


def register_recipe(cls: R) -> R:
    """Class decorator adding a recipe under ``cls.name``; names must be unique."""
    if cls.name in RECIPES and RECIPES[cls.name] is not cls:
        raise UsageError(f"a recipe named {cls.name!r} is already registered")
    RECIPES[cls.name] = cls
    return cls


def recipe_names() -> list[str]:
    return sorted(RECIPES)


def _parse_value(raw: str) -> Any:
    lowered = raw.lower()
    if lowered in {"true", "false"}:
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


def parse_recipe(spec: str) -> Recipe:
    """``name`` or ``name:key=value,...`` into a recipe with validated parameters."""
    name, _, rest = spec.strip().partition(":")
    if name not in RECIPES:
        raise UsageError(f"unknown recipe {name!r}; known recipes: {', '.join(recipe_names())}")
    cls = RECIPES[name]
    raw: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"recipe {spec!r}: expected key=value, got {item!r}")
        raw[key.strip().replace("-", "_")] = _parse_value(value.strip())
    try:
        params = cls.Params.model_validate(raw)
    except ValidationError as exc:
        raise UsageError(describe_validation_error(f"recipe {name!r}", exc)) from exc
    return cls(params)


@dataclass(frozen=True)
class Variant:
    """One child to make: recipes applied in order to the parent's graph."""

    recipes: tuple[Recipe, ...]

    @property
    def name(self) -> str:
        return "+".join(r.name for r in self.recipes)

    def describe(self) -> dict[str, Any]:
        return {r.name: r.describe() for r in self.recipes}


def parse_variant(spec: str) -> Variant:
    """``graph+int8-static`` into a chain of recipes."""
    parts = [p for p in spec.split("+") if p.strip()]
    if not parts:
        raise UsageError("empty recipe: expected a name such as 'int8-dynamic'")
    return Variant(tuple(parse_recipe(p) for p in parts))


def parse_variants(specs: Sequence[str]) -> list[Variant]:
    if not specs:
        raise UsageError(f"no recipe given; known recipes: {', '.join(recipe_names())}")
    variants = [parse_variant(s) for s in specs]
    names = [v.name for v in variants]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes and len({str(v.describe()) for v in variants}) < len(variants):
        raise UsageError(f"recipe given twice with the same parameters: {', '.join(dupes)}")
    return variants
