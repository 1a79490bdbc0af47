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
    import numpy as np
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
        from shopserve.serve.launch import STOP_WITH_PARENT_ENV

        # the deployment stops when this process dies, even by SIGKILL
        self.env = {**os.environ, STOP_WITH_PARENT_ENV: "1", **(env or {})}
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


TOKEN_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # as MiniLM's export


def word_tokenizer(path: Path, texts: Sequence[str]) -> int:
    """A word-level BERT-style ``tokenizer.json`` over the words of ``texts`` at ``path``; the
    vocabulary size."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    probe = pre_tokenizers.BertPreTokenizer()
    words = sorted({w.lower() for t in texts for w, _ in probe.pre_tokenize_str(t)})
    vocab = {tok: i for i, tok in enumerate([*TOKEN_SPECIALS, *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.save(str(path))
    return len(vocab)


def bag_of_words_encoder(path: Path, vocab: int, dim: int = 32,
                         project: np.ndarray | None = None) -> Path:
    """A real ONNX text encoder at ``path``, named like MiniLM's export: token ids -> the mean of
    random word vectors over the attention mask (times ``project``, when given) -> unit length.
    Special tokens carry no meaning (zero vectors)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = np.random.default_rng(0).normal(size=(vocab, dim)).astype(np.float32)
    table[: len(TOKEN_SPECIALS)] = 0.0
    pooled = "total" if project is None else "projected"
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["words"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "last"], ["mask3"]),
        helper.make_node("Mul", ["words", "mask3"], ["kept"]),
        helper.make_node("ReduceSum", ["kept", "one"], ["total"], keepdims=0),
        *([] if project is None else [helper.make_node("MatMul", ["total", "project"],
                                                       ["projected"])]),
        helper.make_node("LpNormalization", [pooled], ["embedding"], axis=1, p=2),
    ]
    initializers = [numpy_helper.from_array(table, "table"),
                    numpy_helper.from_array(np.array([-1], np.int64), "last"),
                    numpy_helper.from_array(np.array([1], np.int64), "one")]
    if project is not None:
        initializers.append(numpy_helper.from_array(project.astype(np.float32), "project"))
    graph = helper.make_graph(
        nodes, "tiny_encoder",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
         for n in ENCODER_INPUTS],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path
