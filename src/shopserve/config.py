"""Typed settings, read from a file, then ``SHOPSERVE_*`` variables, then explicit overrides.

Each capability declares its own frozen ``*Settings`` model; ``load_settings`` fills it in that
order of precedence so that the CLI only has to pass the flags a user actually gave.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from shopserve.errors import SpecError

ENV_PREFIX = "SHOPSERVE_"

S = TypeVar("S", bound=BaseModel)


class HomeSettings(BaseModel):
    """Where the embedded registry and caches live, and optional shared services."""

    model_config = ConfigDict(frozen=True)

    home: Path = Path("~/.shopserve")
    redis_url: str | None = None

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser()


def read_yaml(path: Path) -> Any:
    """Parse a YAML file, naming the file and line on a syntax error."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SpecError(f"{path}: no such file") from exc
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"{path}: invalid YAML at {where}: {problem}") from exc


def describe_validation_error(source: str, exc: ValidationError) -> str:
    """One line per problem, each naming the field path and what was expected."""
    lines = [f"{source}: {exc.error_count()} problem(s)"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)


def env_values(model: type[BaseModel], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``SHOPSERVE_<FIELD>`` variables that name a field of ``model``."""
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    for field in model.model_fields:
        key = ENV_PREFIX + field.upper()
        if key in environ:
            values[field] = environ[key]
    return values


def load_settings(
    model: type[S],
    file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> S:
    """Build ``model`` from ``file``, then environment, then non-None ``overrides``."""
    data: dict[str, Any] = {}
    if file is not None:
        loaded = read_yaml(file)
        if loaded is not None and not isinstance(loaded, dict):
            raise SpecError(f"{file}: expected a mapping of settings, got {type(loaded).__name__}")
        data.update(loaded or {})
    data.update(env_values(model, environ))
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(describe_validation_error(str(file or model.__name__), exc)) from exc


def home_settings(**overrides: Any) -> HomeSettings:
    """The settings every command shares (``SHOPSERVE_HOME``, ``SHOPSERVE_REDIS_URL``)."""
    return load_settings(HomeSettings, overrides=overrides)
