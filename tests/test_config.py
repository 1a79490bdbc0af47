"""Settings precedence: file, then SHOPSERVE_* variables, then explicit flags."""

from pathlib import Path

import pytest

from shopserve.config import HomeSettings, load_settings, read_yaml
from shopserve.errors import SpecError


def test_env_overrides_file_and_flags_override_env(tmp_path: Path) -> None:
    file = tmp_path / "settings.yaml"
    file.write_text("home: /from/file\nredis_url: redis://127.0.0.1:1\n")
    env = {"SHOPSERVE_HOME": "/from/env"}
    assert load_settings(HomeSettings, file, environ={}).home == Path("/from/file")
    from_env = load_settings(HomeSettings, file, environ=env)
    assert from_env.home == Path("/from/env")
    assert from_env.redis_url == "redis://127.0.0.1:1"
    from_flag = load_settings(HomeSettings, file, {"home": "/from/flag", "redis_url": None}, env)
    assert from_flag.home == Path("/from/flag")
    assert from_flag.redis_url == "redis://127.0.0.1:1"  # an unset flag does not override


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    file = tmp_path / "deploy.yaml"
    file.write_text("models:\n  - name: a\n   bad: [\n")
    with pytest.raises(SpecError, match=r"deploy\.yaml: invalid YAML at line \d+"):
        read_yaml(file)


def test_wrong_type_names_the_field(tmp_path: Path) -> None:
    file = tmp_path / "settings.yaml"
    file.write_text("home: [1, 2]\n")
    with pytest.raises(SpecError, match=r"home: "):
        load_settings(HomeSettings, file, environ={})


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"nope\.yaml: no such file"):
        read_yaml(tmp_path / "nope.yaml")
