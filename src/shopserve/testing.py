"""Helpers that start a real shopserve server for tests (yours and ours).

``ShopserveProcess`` runs the ``shopserve serve`` executable on 127.0.0.1 with a free port,
waits until it says it is ready, fails fast with its output if it dies, and kills its whole
process group afterwards::

    with ShopserveProcess.from_spec(spec_dict, tmp_path) as server:
        httpx.post(server.url + "/v1/rank", json=...)
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    import psutil

READY = re.compile(r"shopserve ready at (https?://\S+)")

LINEAR_WEIGHTS = (0.5, -1.0, 2.0, 0.25)


def linear_onnx(path: Path, weights: Sequence[float] = LINEAR_WEIGHTS) -> Path:
    """Write ``y = x @ w`` for ``x: float32[batch, 4]``: a model small enough to make in a test."""
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 1], [float(v) for v in weights])
    shape = helper.make_tensor("shape", TensorProto.INT64, [1], [-1])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]),
         helper.make_node("Reshape", ["xw", "shape"], ["y"])],
        "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch"])], [w, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ShopserveProcess:
    """A running ``shopserve serve`` (supervisor and replicas) in its own process group."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None,
                 startup_timeout_s: float = 60.0, log_dir: Path | None = None) -> None:
        self.args = args
        # the deployment stops when this process dies, even by SIGKILL (serve/launch.py)
        self.env = {**os.environ, "SHOPSERVE_STOP_WITH_PARENT": "1", **(env or {})}
        self.startup_timeout_s = startup_timeout_s
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="shopserve-test-"))
        self.log_path = self.log_dir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    @classmethod
    def from_spec(cls, spec: dict[str, Any], directory: Path, **kwargs: Any) -> ShopserveProcess:
        """Write ``spec`` to ``directory/deploy.yaml`` (port 0 means a free one) and serve it."""
        server = dict(spec.get("server") or {})
        server.setdefault("host", "127.0.0.1")
        if not server.get("port"):
            server["port"] = free_port()
        path = directory / "deploy.yaml"
        path.write_text(yaml.safe_dump({**spec, "server": server}), encoding="utf-8")
        return cls(["serve", str(path)], log_dir=directory, **kwargs)

    def executable(self) -> list[str]:
        exe = Path(sys.executable).with_name("shopserve")
        return [str(exe)] if exe.exists() else [sys.executable, "-m", "shopserve.cli.main"]

    def start(self) -> ShopserveProcess:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen([*self.executable(), *self.args], stdout=log,
                                        stderr=subprocess.STDOUT, env=self.env,
                                        start_new_session=True)
        log.close()
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            match = READY.search(self.output())
            if match:
                self.url = match.group(1)
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"shopserve exited with code {self.process.returncode} "
                                   f"before it was ready:\n{self.output()}")
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"shopserve was not ready within {self.startup_timeout_s} s:\n"
                           f"{self.output()}")

    def output(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM (drain and stop), then kill the whole group; the exit code, if it exited."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout_s)
        code = self.process.poll()
        self.kill()
        return code

    def kill(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def __enter__(self) -> ShopserveProcess:
        return self.start() if self.process is None else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def cpu_seconds(procs: Sequence[psutil.Process]) -> float:
    """User plus system CPU seconds used so far by ``procs`` (gone ones count 0): the benches'
    server CPU per request, which other load on the machine moves less than requests/s."""
    import psutil

    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total
