"""NVIDIA PyTriton peer: Triton's HTTP server in front of a Python ONNX Runtime function.

Triton's dynamic batcher merges concurrent requests (up to 64 rows) into one call.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from ort_common import run, session
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def main() -> None:
    ap = argparse.ArgumentParser()
    for flag in ("--model", "--name"):
        ap.add_argument(flag, required=True)
    for flag in ("--port", "--grpc-port", "--metrics-port"):
        ap.add_argument(flag, type=int, required=True)
    args = ap.parse_args()
    sess = session(args.model)

    @batch  # type: ignore[misc]
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        out = run(sess, inputs)
        return {k: v.reshape(len(v), -1) for k, v in out.items()}

    def tensors(nodes: Any) -> list[Tensor]:
        return [Tensor(name=n.name, dtype=TYPES.get(n.type, np.float32),
                       shape=tuple(d if isinstance(d, int) else -1 for d in n.shape[1:]) or (1,))
                for n in nodes]

    outputs = [Tensor(name=o.name, dtype=np.float32, shape=(-1,)) for o in sess.get_outputs()]
    config = TritonConfig(http_address="127.0.0.1", http_port=args.port,
                          grpc_address="127.0.0.1", grpc_port=args.grpc_port,
                          metrics_port=args.metrics_port)
    with Triton(config=config) as triton:
        triton.bind(model_name=args.name, infer_func=infer, inputs=tensors(sess.get_inputs()),
                    outputs=outputs,
                    config=ModelConfig(max_batch_size=64,
                                       batcher=DynamicBatcher(max_queue_delay_microseconds=1000)))
        triton.serve()


if __name__ == "__main__":
    main()
