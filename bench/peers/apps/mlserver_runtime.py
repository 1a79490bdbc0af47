"""Seldon MLServer peer: a custom runtime that runs the ONNX graph with ONNX Runtime.

Copied into the model folder as ``ort_runtime.py`` and named in its ``model-settings.json``.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OrtRuntime(MLModel):
    async def load(self) -> bool:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        uri = str(self.settings.parameters.uri)  # type: ignore[union-attr]
        self.sess = ort.InferenceSession(uri, opts, providers=["CPUExecutionProvider"])
        self.names = [o.name for o in self.sess.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {i.name: np.asarray(NumpyCodec.decode_input(i)) for i in payload.inputs}
        outs = self.sess.run(self.names, feeds)
        return InferenceResponse(
            model_name=self.name,
            outputs=[NumpyCodec.encode_output(n, o) for n, o in zip(self.names, outs, strict=True)])
