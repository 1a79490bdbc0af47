"""Real bundles end to end: build once, then install and serve inside a network namespace
that has nothing but loopback, so any attempt to reach an index fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_cli

from shopserve.bundle import read_manifest
from shopserve.registry import Registry
from shopserve.testing import free_port, linear_onnx
from shopserve.types import ModelKind

pytestmark = pytest.mark.slow
TARGET = "manylinux_2_28_x86_64"  # this machine's kind, so the bundle installs here too
DEPLOY = "models:\n  - ref: search@production\n  - ref: ranker@production\nreplicas: 1\n"
INFER = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]}]}


@pytest.fixture(scope="session")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("bundle-shop")
    reg = Registry.open(work / "home")
    for name in ("search", "ranker"):
        mv = reg.register(name, {"model.onnx": linear_onnx(work / f"{name}.onnx")},
                          ModelKind.GENERIC)
        reg.promote(mv.ref, "production")
    (work / "deploy.yaml").write_text(DEPLOY)
    return work


@pytest.fixture(scope="session")
def local_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --find-links folder of the user's own wheels; every core dependency has public wheels
    for the target, so it holds none here."""
    return tmp_path_factory.mktemp("local-wheels")


def build(shop: Path, out: Path, cache: Path, links: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("bundle", "build", "--model", "search@production", "--model",
                   "ranker@production", "--deployment", str(shop / "deploy.yaml"),
                   "--platform", TARGET, "--python", "3.11", "--home", str(shop / "home"),
                   "--cache-dir", str(cache), "--find-links", str(links), "-o", str(out),
                   timeout=900)


@pytest.fixture(scope="session")
def bundle(shop: Path, local_wheels: Path, request: pytest.FixtureRequest) -> Path:
    cache = Path(request.config.cache.mkdir("shopserve-bundle-wheels"))
    result = build(shop, shop / "shop.bundle.tar.gz", cache, local_wheels)
    assert result.returncode == 0, result.stderr
    print(result.stdout)  # size and build time, for the record
    assert "MB in" in result.stdout and "each stored once" in result.stdout
    return shop / "shop.bundle.tar.gz"


@pytest.fixture(scope="session")
def netns() -> Iterator[str]:
    name = f"ssbundle-{uuid.uuid4().hex[:8]}"
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (ip) is not installed")
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {made.stderr.strip()}")
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def in_ns(ns: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True, text=True,
                          timeout=timeout)


def test_bundle_holds_runtime_wheels_for_the_target_only(bundle: Path) -> None:
    manifest = read_manifest(bundle)
    names = {w.name for w in manifest.wheels}
    assert {"shopserve", "onnxruntime", "numpy", "pyarrow", "uvicorn", "voyager"} <= names
    assert not names & {"torch", "ray", "pytest"}
    assert len({w.file for w in manifest.wheels}) == len(manifest.wheels)
    assert [m.ref for m in manifest.models] == ["search@1", "ranker@1"]
    assert run_cli("bundle", "verify", str(bundle)).returncode == 0


def test_install_and_serve_with_no_network(bundle: Path, netns: str, tmp_path: Path) -> None:
    probe = in_ns(netns, sys.executable, "-c",
                  "import socket; socket.create_connection(('1.1.1.1', 443), timeout=3)")
    assert probe.returncode != 0 and "unreachable" in probe.stderr.lower()
    prefix = tmp_path / "shop"
    result = in_ns(netns, str(Path(sys.executable).with_name("shopserve")), "bundle",
                   "install", str(bundle), "--prefix", str(prefix))
    assert result.returncode == 0, result.stderr
    assert f"{prefix}/venv/bin/shopserve serve {prefix}/bundle/deploy.yaml" in result.stdout
    port = free_port()  # the printed command, as a user runs it (the port chosen by variable)
    env = {**os.environ, "SHOPSERVE_HOME": str(prefix / "home"), "SHOPSERVE_PORT": str(port)}
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            ["ip", "netns", "exec", netns, str(prefix / "venv/bin/shopserve"), "serve",
             str(prefix / "bundle/deploy.yaml")], env=env,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        answer = _infer_when_ready(netns, prefix, port, server, log)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert answer["outputs"][0]["data"] == [1.75]


def _infer_when_ready(ns: str, prefix: Path, port: int, server: subprocess.Popen[bytes],
                      log: Path) -> dict[str, object]:
    script = ("import httpx, json, sys; r = httpx.post(sys.argv[1], json=json.loads(sys.argv[2]),"
              " timeout=5); r.raise_for_status(); print(r.text)")
    url = f"http://127.0.0.1:{port}/v2/models/search/infer"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert server.poll() is None, log.read_text(errors="replace")
        got = in_ns(ns, str(prefix / "venv/bin/python"), "-c", script, url, json.dumps(INFER),
                    timeout=30)
        if got.returncode == 0:
            return dict(json.loads(got.stdout))
        time.sleep(0.5)
    raise AssertionError("the installed service never answered on 127.0.0.1")


def test_install_script_needs_only_python(bundle: Path, netns: str, tmp_path: Path) -> None:
    base = Path(sys.base_prefix) / "bin" / "python3"
    bare = subprocess.run([str(base), "-I", "-c", "import shopserve"], capture_output=True)
    assert bare.returncode != 0  # this interpreter has no shopserve
    with tarfile.open(bundle) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    folder = tmp_path / "unpacked" / "shopserve-bundle"
    result = in_ns(netns, str(base), "-I", str(folder / "install.py"),
                   "--prefix", str(tmp_path / "shop"))
    assert result.returncode == 0, result.stderr
    check = subprocess.run(
        [str(tmp_path / "shop/venv/bin/python"), "-c",
         "import sys, pathlib; from shopserve.registry import Registry; "
         "print(Registry.open(pathlib.Path(sys.argv[1])).get('ranker@production').origin)",
         str(tmp_path / "shop/home")], capture_output=True, text=True)
    assert check.stdout.strip() == "ranker@1", check.stderr


def test_diff_after_a_new_model_version(bundle: Path, shop: Path, local_wheels: Path,
                                        request: pytest.FixtureRequest) -> None:
    reg = Registry.open(shop / "home")
    changed = linear_onnx(shop / "search2.onnx", (1.0, -1.0, 2.0, 0.25))
    mv = reg.register("search", {"model.onnx": changed}, ModelKind.GENERIC)
    reg.promote(mv.ref, "production")
    cache = Path(request.config.cache.mkdir("shopserve-bundle-wheels"))
    result = build(shop, shop / "next.bundle.tar.gz", cache, local_wheels)
    assert result.returncode == 0, result.stderr
    diff = run_cli("bundle", "diff", str(bundle), str(shop / "next.bundle.tar.gz"))
    assert diff.returncode == 0, diff.stderr
    assert diff.stdout.startswith("models:\n  ~ search v1 (aliases production;")
    assert "-> v2 (aliases production;" in diff.stdout
    assert "dependencies:" not in diff.stdout and "ranker" not in diff.stdout
