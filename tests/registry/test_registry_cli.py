"""`shopserve models` as a user runs it: the real executable, SHOPSERVE_HOME in a tmp dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SHOPSERVE = str(Path(sys.executable).with_name("shopserve"))
TIMEOUT_S = 120


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "SHOPSERVE_HOME": str(home)}


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SHOPSERVE, "models", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=_env(home),
    )


def ok(home: Path, *args: str) -> str:
    result = cli(home, *args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def test_models_lifecycle(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (tmp_path / "a.onnx").write_bytes(b"a" * 100)
    (tmp_path / "b.onnx").write_bytes(b"b" * 120)
    (tmp_path / "cfg.json").write_text('{"k": 10}')
    assert (
        ok(
            home,
            "register",
            "ctr",
            "--kind",
            "rank",
            "--file",
            f"model.onnx={tmp_path}/a.onnx",
            "--metric",
            "auc=0.71",
            "--config",
            str(tmp_path / "cfg.json"),
        )
        == "registered ctr@1\n"
    )
    shown = json.loads(
        ok(
            home,
            "register",
            "ctr",
            "--kind",
            "rank",
            "--json",
            "--file",
            f"model.onnx={tmp_path}/b.onnx",
            "--metric",
            "auc=0.74",
            "--parent",
            "ctr@1",
        )
    )
    assert (shown["version"], shown["parent"], shown["metrics"]) == (2, "ctr@1", {"auc": 0.74})
    assert ok(home, "promote", "ctr@1", "production") == "ctr@production -> ctr@1\n"
    ok(home, "promote", "ctr@2", "production")
    table = ok(home, "list")
    assert table.splitlines()[0].split() == ["NAME", "KIND", "VERSIONS", "LATEST", "ALIASES"]
    assert table.splitlines()[1].split() == ["ctr", "rank", "2", "2", "production=2"]
    assert "auc=0.74" in ok(home, "list", "ctr")
    assert ok(home, "rollback", "ctr", "production") == "ctr@production -> ctr@1\n"
    show = json.loads(ok(home, "show", "ctr@production", "--json"))
    assert show["version"] == 1 and show["aliases"] == ["production"]
    assert show["config"] == {"k": 10}
    assert "sha256:" in ok(home, "show", "ctr@1")
    diff = ok(home, "diff", "ctr@1", "ctr@2")
    assert diff.splitlines()[1].split() == ["auc", "0.71", "0.74", "0.03"]
    assert "files changed: model.onnx" in diff

    refused = cli(home, "delete", "ctr@1")
    assert refused.returncode == 4 and "alias ctr@production points at it" in refused.stderr
    assert ok(home, "delete", "ctr@2") == "deleted ctr@2\n"
    assert json.loads(ok(home, "gc", "--json"))["bytes_freed"] == 120

    archive = tmp_path / "ctr.tar.gz"
    assert (
        ok(home, "export", "ctr@production", "-o", str(archive)) == f"exported ctr@1 to {archive}\n"
    )
    other = tmp_path / "other"
    assert ok(other, "import", str(archive)) == "imported ctr@1 as ctr@1\n"
    assert ok(tmp_path / "ignored", "--home", str(other), "import", str(archive)).endswith(
        "ctr@2\n"
    )
    assert json.loads(ok(other, "show", "ctr@2", "--json"))["files"] == show["files"]
    assert ok(other, "check") == "registry ok\n"


def test_models_errors_name_what_is_wrong(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (tmp_path / "a.onnx").write_bytes(b"a" * 100)
    bad_pair = cli(home, "register", "ctr", "--kind", "rank", "--file", "model.onnx")
    assert bad_pair.returncode == 2 and "--file 'model.onnx': expected KEY=VALUE" in bad_pair.stderr
    bad_metric = cli(
        home,
        "register",
        "ctr",
        "--kind",
        "rank",
        "--file",
        f"m={tmp_path}/a.onnx",
        "--metric",
        "auc=high",
    )
    assert bad_metric.returncode == 2 and "--metric auc" in bad_metric.stderr
    missing = cli(home, "show", "ctr@3")
    assert missing.returncode == 3 and "no model named 'ctr'" in missing.stderr
    ok(home, "register", "ctr", "--kind", "rank", "--file", f"m={tmp_path}/a.onnx")
    sha = json.loads(ok(home, "show", "ctr", "--json"))["files"]["m"]["sha256"]
    obj = home / "objects" / sha[:2] / sha
    obj.chmod(0o644)
    obj.write_bytes(b"a" * 99)
    broken = cli(home, "check")
    assert broken.returncode == 5 and "ctr@1 artifact 'm'" in broken.stderr


def test_concurrent_cli_registrations(tmp_path: Path) -> None:
    home = tmp_path / "home"
    procs = []
    for i in range(4):
        (tmp_path / f"{i}.onnx").write_bytes(bytes([i]) * 64)
        procs.append(
            subprocess.Popen(
                [
                    SHOPSERVE,
                    "models",
                    "register",
                    "ctr",
                    "--kind",
                    "rank",
                    "--file",
                    f"model.onnx={tmp_path}/{i}.onnx",
                    "--metric",
                    f"worker={i}",
                    "--json",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=_env(home),
            )
        )
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=TIMEOUT_S)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out))
    assert sorted(o["version"] for o in outputs) == [1, 2, 3, 4]
    listed = json.loads(ok(home, "list", "ctr", "--json"))
    assert sorted(int(v["metrics"]["worker"]) for v in listed) == [0, 1, 2, 3]


def test_register_records_the_graph_signature(tmp_path: Path) -> None:
    from onnx import TensorProto, helper, save

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "id.onnx"
    )
    home = tmp_path / "home"
    mv = json.loads(
        ok(
            home,
            "register",
            "ident",
            "--kind",
            "generic",
            "--json",
            "--graph",
            "model.onnx",
            "--file",
            f"model.onnx={tmp_path}/id.onnx",
        )
    )
    assert mv["config"] == {"graph": "model.onnx"}
    assert mv["signature"]["inputs"] == [{"name": "x", "dtype": "float32", "shape": [-1, 3]}]
    wrong = cli(
        home,
        "register",
        "ident",
        "--kind",
        "generic",
        "--graph",
        "other.onnx",
        "--file",
        f"model.onnx={tmp_path}/id.onnx",
    )
    assert wrong.returncode == 2 and "graph 'other.onnx' is not one of" in wrong.stderr
    (tmp_path / "junk.onnx").write_bytes(b"not a graph")
    junk = cli(
        home,
        "register",
        "ident",
        "--kind",
        "generic",
        "--graph",
        "model.onnx",
        "--file",
        f"model.onnx={tmp_path}/junk.onnx",
    )
    assert junk.returncode == 5 and "cannot load this model" in junk.stderr
    assert [v["version"] for v in json.loads(ok(home, "list", "ident", "--json"))] == [1]
