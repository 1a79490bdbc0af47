"""Hardening tests reuse the serving tests' tiny real models (tests/serve/conftest.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SERVE = Path(__file__).resolve().parents[1] / "serve"
sys.path.insert(0, str(SERVE))  # serve_models, search_models

_spec = importlib.util.spec_from_file_location("shopserve_serve_conftest", SERVE / "conftest.py")
assert _spec is not None and _spec.loader is not None
_serve = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_serve)
serve_home = _serve.serve_home  # the session fixture with the tiny registry
