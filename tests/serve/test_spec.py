"""Deployment specs: errors name the field and its line; flags override the file; docs run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from shopserve.errors import SpecError
from shopserve.serve.spec import load_deployment
from shopserve.testing import ShopserveProcess, free_port

SHOPSERVE = str(Path(sys.executable).with_name("shopserve"))
DOCS = Path(__file__).resolve().parents[2] / "docs" / "serving.md"


def test_bad_fields_are_named_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text("models:\n  - ref: ctr@production\n    batching:\n"
                    "      max_batch_size: 0\nreplicas: many\n", encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_deployment(path)
    text = str(info.value)
    assert "models.0.batching.max_batch_size (line 4)" in text
    assert "replicas (line 5)" in text


@pytest.mark.parametrize(("yaml_text", "named"), [
    ("models: []\n", "models"),
    ("models:\n  - ref: 'Bad Name'\n", "invalid model name"),
    ("models:\n  - ref: ctr@1\n    colour: red\n", "colour"),
    ("models:\n  - ref: a@1\n  - ref: a@2\n", "unique"),
    ("models: [\n", "invalid YAML at line"),
    ("models:\n  - ref: ctr@1\n    replicas: 3\n", "set for the whole deployment, not per model"),
])
def test_invalid_specs(tmp_path: Path, yaml_text: str, named: str) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text(yaml_text, encoding="utf-8")
    with pytest.raises(SpecError, match=re.escape(named)):
        load_deployment(path)


def test_cli_reports_spec_errors_with_exit_code_2(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text("models:\n  - ref: ctr@1\n    timeout_ms: -1\n", encoding="utf-8")
    result = subprocess.run([SHOPSERVE, "serve", str(path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "models.0.timeout_ms (line 3)" in result.stderr


def test_unknown_model_ref_fails_fast(serve_home: Path, tmp_path: Path) -> None:
    result = subprocess.run([SHOPSERVE, "serve", "--model", "nosuch@production", "--port", "0",
                             "--home", str(serve_home)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 3, result.stderr
    assert "nosuch" in result.stderr


def test_flags_serve_one_model_and_override_env(serve_home: Path, tmp_path: Path) -> None:
    port = free_port()
    proc = ShopserveProcess(["serve", "--model", "linear@production", "--replicas", "1",
                             "--port", str(port), "--home", str(serve_home)],
                            env={"SHOPSERVE_PORT": "1"}, log_dir=tmp_path)
    with proc:
        assert proc.url.endswith(f":{port}")
        assert httpx.get(proc.url + "/v2/models/linear").json()["versions"] == ["1"]


def test_every_example_spec_in_the_docs_validates(tmp_path: Path) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    assert blocks, "docs/serving.md has no yaml example"
    for i, block in enumerate(blocks):
        path = tmp_path / f"example{i}.yaml"
        path.write_text(block, encoding="utf-8")
        load_deployment(path)
