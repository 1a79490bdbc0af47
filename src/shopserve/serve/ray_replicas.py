"""What runs inside Ray Serve: model replicas (batched with ``@serve.batch``) and the gateway.

The gateway is the embedded backend's ``DataPlane`` and routes; only the call into the model
changes, from an in-process batcher to a handle on the model's deployment.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from shopserve import errors
from shopserve.errors import (
    DeadlineExceededError,
    InputError,
    OverloadedError,
    ShopserveError,
    UnavailableError,
)
from shopserve.registry import ModelVersion
from shopserve.runtime import ray as ray_rt
from shopserve.runtime.onnx import Device, SessionSettings
from shopserve.serve.backends import ServedModel
from shopserve.serve.batching import Batcher
from shopserve.serve.dataplane import DataPlane
from shopserve.serve.endpoints import OP_KIND, Endpoint, VersionRunner
from shopserve.serve.http import build_app
from shopserve.serve.routes import ProtocolRoutes
from shopserve.serve.spec import DeploymentSpec, ModelSpec
from shopserve.types import ModelSignature

Outcome = tuple[str, Any, Any]  # ("ok", result, None) | ("error", class name, message)


class ModelReplica:
    """One served version in a Ray actor: artifacts fetched and verified, loaded and warmed."""

    def __init__(self, endpoint: str, spec_json: str, meta_json: str,
                 shipped: dict[str, ray_rt.ShippedFile], device: str, threads: int) -> None:
        ray_rt.keep_replica_on_loopback()
        meta = ModelVersion.model_validate_json(meta_json)
        files = ray_rt.fetch_files(shipped)
        settings = SessionSettings(device=Device(device), intra_op_threads=threads)
        model = ServedModel(meta, files, settings)
        model.warm_up()
        self.runner = VersionRunner(endpoint, model, ModelSpec.model_validate_json(spec_json))

    async def describe(self) -> dict[str, str]:
        model = self.runner.model
        return {"meta": model.meta.model_dump_json(),
                "signature": model.signature.model_dump_json()}

    async def run(self, op: str, payload: Any) -> Outcome:
        outcome: Outcome = await self.batch(op, payload)  # type: ignore[attr-defined]
        return outcome

    def run_batch(self, ops: list[str], payloads: list[Any]) -> list[Outcome]:
        """Each operation's requests in one model call; a bad request is retried alone, as the
        embedded batcher does, so that only it fails."""
        out: list[Outcome | None] = [None] * len(ops)
        for op in dict.fromkeys(ops):
            idx = [i for i, o in enumerate(ops) if o == op]
            for i, outcome in zip(idx, self._run_op(op, [payloads[i] for i in idx]), strict=True):
                out[i] = outcome
        return [o for o in out if o is not None]

    def _run_op(self, op: str, payloads: list[Any]) -> list[Outcome]:
        batcher = self.runner.batchers.get(op)
        if batcher is None:
            return [("error", "UsageError", f"model {self.runner.endpoint!r} does not do {op}")
                    ] * len(payloads)
        try:
            return [("ok", r, None) for r in batcher.run_batch(payloads)]
        except InputError as exc:
            if len(payloads) == 1:
                return [("error", type(exc).__name__, exc.message)]
            return [self._run_op(op, [p])[0] for p in payloads]
        except ShopserveError as exc:
            return [("error", type(exc).__name__, exc.message)] * len(payloads)
        except Exception as exc:  # the model crashed: the gateway answers it as a 500
            return [("crash", type(exc).__name__, str(exc))] * len(payloads)


def replica_class(max_batch_size: int, wait_s: float) -> type:
    """A ``ModelReplica`` whose ``batch`` method is Ray Serve-batched with these bounds."""

    class BatchedReplica(ModelReplica):
        @ray_rt.batched(max_batch_size, wait_s)
        async def batch(self, ops: list[str], payloads: list[Any]) -> list[Outcome]:
            return self.run_batch(ops, payloads)

    BatchedReplica.__name__ = BatchedReplica.__qualname__ = "ModelReplica"
    return BatchedReplica


class RemoteModel(ServedModel):
    """What the gateway knows of a version served by a model deployment."""

    def __init__(self, meta: ModelVersion, signature: ModelSignature) -> None:
        self.meta = meta
        self.kind = meta.kind
        self.pipe = None
        self._signature = signature

    @property
    def signature(self) -> ModelSignature:
        return self._signature

    def bm25(self, query: str, k: int) -> list[dict[str, Any]] | None:
        return None  # the catalog lives in the model replicas only

    def warm_up(self) -> None:
        """The model replica warmed itself before it reported ready."""


class RemoteCall(Batcher[Any, Any]):
    """One operation of one model deployment, called by handle within the request's deadline.

    Rows in flight are bounded per gateway replica, as the embedded queue is (429 beyond).
    """

    def __init__(self, handle: Any, op: str, queue_limit: int, max_delay_s: float) -> None:
        self.handle, self.op = handle, op
        self.queue_limit, self.max_delay_s = queue_limit, max_delay_s
        self.waiting = 0

    async def submit(self, payload: Any, size: int, deadline: float) -> Any:
        if self.waiting + size > self.queue_limit:
            raise OverloadedError(
                f"queue full ({self.waiting} rows waiting, limit {self.queue_limit})",
                retry_after_s=max(self.max_delay_s * 4, 0.05))
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceededError("deadline passed in queue")
        self.waiting += size
        response = self.handle.run.remote(self.op, payload)
        try:
            outcome: Outcome = await asyncio.wait_for(_result(response), left)
        except TimeoutError:
            response.cancel()
            raise DeadlineExceededError("the request's deadline passed before the model "
                                        "answered", retry_after_s=0.1) from None
        except Exception as exc:  # the replica died or Ray refused: the client may retry
            raise UnavailableError(f"model replica unavailable: {type(exc).__name__}",
                                   retry_after_s=1) from exc
        finally:
            self.waiting -= size
        return _unpack(outcome)

    def close(self) -> None:
        """Nothing to stop: the batching happens in the model replicas."""


async def _result(response: Any) -> Any:
    return await response


def _unpack(outcome: Outcome) -> Any:
    status, value, message = outcome
    if status == "ok":
        return value
    if status == "error":
        cls = getattr(errors, str(value), None)
        if isinstance(cls, type) and issubclass(cls, ShopserveError):
            raise cls(str(message))
        raise ShopserveError(str(message))
    raise RuntimeError(f"model failed: {value}: {message}")


class RemoteRunner(VersionRunner):
    def __init__(self, endpoint: str, model: RemoteModel, handle: Any, spec: ModelSpec) -> None:
        self.endpoint = endpoint
        self.model = model
        ops = ["infer", *(op for op, kind in OP_KIND.items() if kind is model.kind)]
        delay = spec.batching.max_queue_delay_ms / 1000
        self.batchers = {op: RemoteCall(handle, op, spec.queue_limit, delay) for op in ops}


class Gateway:
    """The HTTP face on Ray Serve: the embedded backend's data plane over model handles."""

    async def __init__(self, spec_json: str,  # type: ignore[misc]
                       handles: dict[str, dict[str, Any]]) -> None:
        ray_rt.keep_replica_on_loopback()
        spec = DeploymentSpec.model_validate_json(spec_json)
        endpoints = {}
        for m in spec.models:
            runners = {}
            for role, handle in handles[m.endpoint].items():
                info = await handle.describe.remote()
                model = RemoteModel(ModelVersion.model_validate_json(info["meta"]),
                                    ModelSignature.model_validate_json(info["signature"]))
                runners[role] = RemoteRunner(m.endpoint, model, handle, m)
            endpoints[m.endpoint] = Endpoint(m, runners["stable"], runners.get("canary"),
                                             runners.get("shadow"))
        self.plane = DataPlane(spec, endpoints)
        self.plane.warm_up()

    def __serve_build_asgi_app__(self) -> Any:
        return build_app(self.plane, ProtocolRoutes(self.plane).routes())



