"""TorchServe handler: ONNX Runtime on the graph packed in the model archive.

With batching on, TorchServe hands over up to ``batchSize`` requests at once; they run as one
model call and are answered one by one.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ort_common import decode, encode, run_many, session
from ts.torch_handler.base_handler import BaseHandler


class OrtHandler(BaseHandler):  # type: ignore[misc]
    def initialize(self, context: Any) -> None:
        model_dir = context.system_properties["model_dir"]
        self.name = context.manifest["model"]["modelName"]
        self.sess = session(os.path.join(model_dir, "model.onnx"))
        self.initialized = True

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[dict[str, Any]]:
        requests = []
        for item in data:
            body = item.get("body") or item.get("data")
            if isinstance(body, (bytes, bytearray)):
                body = json.loads(body)
            requests.append(decode(body))
        return [encode(self.name, out) for out in run_many(self.sess, requests)]
