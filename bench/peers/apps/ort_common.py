"""ONNX Runtime helpers shared by the peer servers (numpy and onnxruntime only).

Every peer gets the same session settings as shopserve: one intra-op thread per process.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnxruntime as ort

NUMPY = {"FP32": np.float32, "INT64": np.int64, "INT32": np.int32, "FP64": np.float64}
V2 = {"float32": "FP32", "int64": "INT64", "int32": "INT32", "float64": "FP64"}


def session(path: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def decode(request: dict[str, Any]) -> dict[str, np.ndarray]:
    return {t["name"]: np.asarray(t["data"], dtype=NUMPY[t["datatype"]]).reshape(t["shape"])
            for t in request["inputs"]}


def encode(name: str, outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    return {"model_name": name, "outputs": [
        {"name": k, "datatype": V2.get(str(v.dtype), "FP32"), "shape": list(v.shape),
         "data": v.ravel().tolist()} for k, v in outputs.items()]}


def run(sess: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds), strict=True))


def run_many(sess: ort.InferenceSession, requests: list[dict[str, np.ndarray]]) \
        -> list[dict[str, np.ndarray]]:
    """One model call for many requests (all of the same shape), split back per request."""
    sizes = [len(next(iter(r.values()))) for r in requests]
    feeds = {k: np.concatenate([r[k] for r in requests]) for k in requests[0]}
    out = run(sess, feeds)
    bounds = np.cumsum(sizes)[:-1]
    split = {k: np.split(v, bounds) for k, v in out.items()}
    return [{k: split[k][i] for k in out} for i in range(len(requests))]


def dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
