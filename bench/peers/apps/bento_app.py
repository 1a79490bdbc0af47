"""BentoML peers: ``Plain`` (one request per model call) and ``Batched`` (adaptive batching).

``Batched`` takes ``{"items": [<OIP request>]}`` so that BentoML's batcher can merge the
``items`` lists of concurrent requests into one model call.
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
from ort_common import decode, encode, run, run_many, session

MODEL = os.environ.get("BENCH_MODEL", "model.onnx")
NAME = os.path.basename(os.path.dirname(MODEL))


@bentoml.service(workers=2)
class Plain:
    def __init__(self) -> None:
        self.sess = session(MODEL)

    @bentoml.api
    def infer(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        return encode(NAME, run(self.sess, decode({"inputs": inputs})))


@bentoml.service(workers=2)
class Batched:
    def __init__(self) -> None:
        self.sess = session(MODEL)

    @bentoml.api(batchable=True, max_batch_size=32)  # BentoML's default max_latency_ms
    def infer(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        outs = run_many(self.sess, [decode(item) for item in items])
        return [encode(NAME, out) for out in outs]
