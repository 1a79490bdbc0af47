"""The deployment spec: what `shopserve serve` runs, validated from YAML with line-precise errors.

Every replica process serves every model of the deployment (they share one port), so replicas
and zones are set for the deployment (a ``replicas`` under a model is refused, not ignored), and
batching, queue limits, cache, fallbacks and canary per model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shopserve.config import read_yaml
from shopserve.errors import SpecError
from shopserve.registry.refs import parse_ref


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BatchingSpec(_Spec):
    """Dynamic batching: wait up to ``max_queue_delay_ms`` to fill ``max_batch_size`` rows."""

    max_batch_size: int = Field(default=32, ge=1, le=4096)
    max_queue_delay_ms: float = Field(default=1.0, ge=0, le=1000)
    # run the model on a worker thread instead of the event loop (for slow models on many
    # cores); inline is faster with one ONNX thread per replica
    threaded: bool = False


class GuardSpec(_Spec):
    """When the canary is rolled back by itself (checked once ``min_requests`` were served)."""

    min_requests: int = Field(default=50, ge=1)
    max_error_rate: float = Field(default=0.05, ge=0, le=1)
    max_mean_latency_ms: float = Field(default=50.0, gt=0)
    max_score_shift: float = Field(default=0.25, ge=0)  # |mean canary score - mean stable score|


class CanarySpec(_Spec):
    ref: str
    weight: float = Field(default=0.1, ge=0, le=1)
    guard: GuardSpec = Field(default_factory=GuardSpec)

    @field_validator("ref")
    @classmethod
    def _ref(cls, value: str) -> str:
        return _check_ref(value)


class ShadowSpec(_Spec):
    """Mirror ``fraction`` of requests to ``ref``; compared and counted, never answered from."""

    ref: str
    fraction: float = Field(default=1.0, ge=0, le=1)

    @field_validator("ref")
    @classmethod
    def _ref(cls, value: str) -> str:
        return _check_ref(value)


class FallbackSpec(_Spec):
    """What answers, marked degraded, when the model cannot answer in time."""

    popular: list[str] = Field(default_factory=list)  # product ids, best first
    last_good: bool = True  # the last good answer cached for the same request
    bm25: bool = False  # search only: the catalog's BM25 index when the model has one


class ModelSpec(_Spec):
    """One served model, by registry reference (``name@alias`` or ``name@3``)."""

    ref: str
    name: str | None = None  # endpoint name; the registry model name by default
    batching: BatchingSpec = Field(default_factory=BatchingSpec)
    timeout_ms: float = Field(default=1000.0, gt=0, le=600_000)
    queue_limit: int = Field(default=512, ge=1)
    cache: bool = True
    fallback: FallbackSpec = Field(default_factory=FallbackSpec)
    canary: CanarySpec | None = None
    shadow: ShadowSpec | None = None

    @field_validator("ref")
    @classmethod
    def _ref(cls, value: str) -> str:
        return _check_ref(value)

    @model_validator(mode="before")
    @classmethod
    def _no_replica_groups(cls, data: Any) -> Any:
        if isinstance(data, dict) and ({"replicas", "zones"} & set(data)):
            raise ValueError(
                "'replicas' and 'zones' are set for the whole deployment, not per model: "
                "every replica serves every model on the one shared port (no proxy hop; see "
                "docs/serving.md); bound this model's share with 'queue_limit' and "
                "'batching' instead")
        return data

    @property
    def endpoint(self) -> str:
        return self.name or parse_ref(self.ref).name


class CacheSpec(_Spec):
    size: int = Field(default=10_000, ge=0)  # entries per replica; 0 turns the in-process cache off
    ttl_s: float = Field(default=60.0, gt=0)
    redis_url: str | None = None
    redis_timeout_ms: float = Field(default=20.0, gt=0)
    redis_retry_s: float = Field(default=2.0, gt=0)  # how long Redis is bypassed after a failure


class HealthSpec(_Spec):
    interval_s: float = Field(default=0.5, gt=0)
    timeout_s: float = Field(default=1.0, gt=0)  # a replica that does not answer in time is hung
    failures: int = Field(default=2, ge=1)
    startup_timeout_s: float = Field(default=60.0, gt=0)
    drain_timeout_s: float = Field(default=10.0, gt=0)


class RateLimitSpec(_Spec):
    """Per client (by address) and per replica: a token bucket on inference routes."""

    per_s: float = Field(gt=0)
    burst: int = Field(default=20, ge=1)


class ServerSpec(_Spec):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)  # 0 picks a free port (printed when ready)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    admin_token: str | None = None  # the admin API is off without one
    idle_timeout_s: int = Field(default=5, ge=1, le=3600)  # a connection with no request
    request_timeout_s: float = Field(default=10.0, gt=0, le=3600)  # head and body, from 1st byte
    max_head_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)
    # the admin API on its own address (then not on the data port); host defaults to ``host``
    admin_host: str | None = None
    admin_port: int | None = Field(default=None, ge=0, le=65535)
    data_token: str | None = None  # inference and metrics need it when set; probes never do
    rate_limit: RateLimitSpec | None = None
    # inference requests in flight per replica; the next gets 429 + Retry-After before its
    # body is read. Default: 2 x the largest max_batch_size (DeploymentSpec.in_flight_limit)
    max_in_flight: int | None = Field(default=None, ge=1, le=100_000)
    # while the replica refuses and its event loop is later than this, it admits fewer (down to
    # 1; back up to max_in_flight when the lag is gone): refusals wait for the loop's round.
    # None (the default): the limit stays max_in_flight. Off by default: in the overload drill
    # it halved the median refusal time but answered fewer requests, with a worse admitted p99
    # (docs/drills.md, "Adaptive admission")
    max_loop_lag_ms: float | None = Field(default=None, gt=0, le=1000)
    tls_cert: Path | None = None  # PEM files; both or neither
    tls_key: Path | None = None

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerSpec:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both or neither")
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not path.is_file():
                raise ValueError(f"TLS file {path} does not exist")
        if self.admin_host is not None and self.admin_port is None:
            raise ValueError("admin_host needs admin_port")
        return self

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"
    device: str = "cpu"
    threads: int = Field(default=1, ge=1, le=64)


class DeploymentSpec(_Spec):
    """A whole deployment: models, replica processes, zones, cache, health checks, server."""

    models: list[ModelSpec] = Field(min_length=1)
    replicas: int = Field(default=2, ge=1, le=64)
    zones: list[str] = Field(default_factory=lambda: ["a"], min_length=1)
    cache: CacheSpec = Field(default_factory=CacheSpec)
    health: HealthSpec = Field(default_factory=HealthSpec)
    server: ServerSpec = Field(default_factory=ServerSpec)
    home: Path | None = None  # registry home; SHOPSERVE_HOME or ~/.shopserve by default

    @model_validator(mode="after")
    def _unique_names(self) -> DeploymentSpec:
        names = [m.endpoint for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique; repeated: {dupes}")
        return self

    @property
    def in_flight_limit(self) -> int:
        """``server.max_in_flight``, or two full batches of the largest model (at least 16):
        enough to keep the model busy while the next batch is read, little enough that an
        admitted request waits for at most about two batches."""
        if self.server.max_in_flight is not None:
            return self.server.max_in_flight
        return max(16, 2 * max(m.batching.max_batch_size for m in self.models))

    def model(self, name: str) -> ModelSpec:
        for spec in self.models:
            if spec.endpoint == name:
                return spec
        raise KeyError(name)


def _check_ref(value: str) -> str:
    try:
        parse_ref(value)
    except Exception as exc:  # the registry's own error; re-raised as a validation message
        raise ValueError(str(exc)) from exc
    return value


def load_deployment(path: Path) -> DeploymentSpec:
    """The deployment in ``path``, or a ``SpecError`` naming each bad field and its line."""
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping with 'models', got {type(data).__name__}")
    return parse_deployment(data, source=str(path), text=path.read_text(encoding="utf-8"))


def parse_deployment(data: Any, source: str = "deployment",
                     text: str | None = None) -> DeploymentSpec:
    try:
        return DeploymentSpec.model_validate(data)
    except ValidationError as exc:
        lines = [f"{source}: {exc.error_count()} problem(s)"]
        root = yaml.compose(text) if text else None
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            line = _line_of(root, err["loc"])
            at = f" (line {line})" if line else ""
            lines.append(f"  {where}{at}: {err['msg']}")
        raise SpecError("\n".join(lines)) from exc


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the deepest YAML node on the path ``loc``."""
    line = None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif (isinstance(node, yaml.SequenceNode) and isinstance(part, int)
              and part < len(node.value)):
            node = node.value[part]
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line
