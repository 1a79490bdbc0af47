"""The drill file: a Chaos Toolkit experiment with shopserve's part under ``extensions``.

Validated into frozen models; a bad field is reported with its path and YAML line.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shopserve.config import read_yaml
from shopserve.errors import SpecError


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class _Open(BaseModel):
    """Chaos Toolkit parts that may carry keys shopserve does not use (kept, not checked)."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)


# --- Chaos Toolkit part ---------------------------------------------------------------------

class HttpProvider(_Open):
    type: Literal["http"]
    url: str  # absolute, or a path resolved against the drill's target
    method: str = "GET"
    timeout: float = Field(default=3.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)
    arguments: dict[str, Any] | None = None


class PythonProvider(_Open):
    type: Literal["python"]
    module: str
    func: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ProcessProvider(_Open):
    type: Literal["process"]
    path: str
    arguments: list[str] | str = Field(default_factory=list)
    timeout: float = Field(default=30.0, gt=0)


Provider = Annotated[HttpProvider | PythonProvider | ProcessProvider, Field(discriminator="type")]


class RangeTolerance(_Spec):
    type: Literal["range"]
    range: tuple[float, float]
    target: str | None = None  # a key of a mapping output, e.g. "status"


Tolerance = bool | int | float | str | list[int] | RangeTolerance


class ActivitySpec(_Open):
    type: Literal["probe", "action"]
    name: str = Field(min_length=1)
    provider: Provider
    tolerance: Tolerance | None = None
    pauses: dict[str, float] = Field(default_factory=dict)


class HypothesisSpec(_Open):
    title: str
    probes: list[ActivitySpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _tolerances(self) -> HypothesisSpec:
        missing = [p.name for p in self.probes if p.tolerance is None]
        if missing:
            raise ValueError(f"steady-state probes need a 'tolerance': {missing}")
        return self


# --- shopserve part -------------------------------------------------------------------------

class Route(enum.StrEnum):
    RANK = "rank"
    SEARCH = "search"
    RECOMMEND = "recommend"


class MixEntry(_Spec):
    route: Route
    model: str | None = None
    weight: float = Field(default=1.0, gt=0)
    rows: int = Field(default=1, ge=1, le=1000)  # candidates per rank request
    k: int = Field(default=10, ge=1, le=1000)


class DemoSource(_Spec):
    demo: Literal["small", "medium"] = "small"
    seed: int = 0


class FileSource(_Spec):
    file: Path  # JSON lines: {"route": "rank", "body": {...}}


class ClientSpec(_Spec):
    """How the load behaves like a user's retrying client."""

    retries: int = Field(default=3, ge=0, le=10)
    backoff_ms: float = Field(default=20.0, ge=0, le=5000)
    attempt_timeout_s: float = Field(default=1.0, gt=0, le=60)
    connections: int = Field(default=8, ge=1, le=256)
    max_inflight: int = Field(default=128, ge=1, le=10_000)


class LoadSpec(_Spec):
    rate: float = Field(gt=0, le=20_000)  # requests per second, open loop
    duration_s: float = Field(gt=0, le=3600)
    mix: list[MixEntry] = Field(default_factory=lambda: [MixEntry(route=Route.RANK)],
                                min_length=1)
    source: DemoSource | FileSource = Field(default_factory=DemoSource)
    client: ClientSpec = Field(default_factory=ClientSpec)


class SelectMode(enum.StrEnum):
    ONE = "one"
    ALL = "all"
    COUNT = "count"
    PERCENTAGE = "percentage"
    ZONE = "zone"


class TargetSpec(_Spec):
    select: SelectMode = SelectMode.ONE
    count: int | None = Field(default=None, ge=1)
    percentage: float | None = Field(default=None, gt=0, le=100)
    zone: str | None = None
    seed: int = 0

    @model_validator(mode="after")
    def _needs(self) -> TargetSpec:
        need = {SelectMode.COUNT: ("count", self.count),
                SelectMode.PERCENTAGE: ("percentage", self.percentage),
                SelectMode.ZONE: ("zone", self.zone)}.get(self.select)
        if need and need[1] is None:
            raise ValueError(f"select: {self.select.value} needs '{need[0]}'")
        return self


class FaultType(enum.StrEnum):
    REPLICA_CRASH = "replica-crash"
    REPLICA_HANG = "replica-hang"
    PROXY = "proxy"
    REDIS_OUTAGE = "redis-outage"
    CORRUPT_ARTIFACT = "corrupt-artifact"
    BAD_CANARY = "bad-canary"
    OVERLOAD = "overload"
    ZONE_LOSS = "zone-loss"
    FRONT_KILL = "front-kill"
    RAY_REPLICA_KILL = "ray-replica-kill"
    RAY_NODE_KILL = "ray-node-kill"


class _Fault(_Spec):
    start_s: float = Field(default=2.0, ge=0)
    duration_s: float = Field(default=2.0, ge=0)


class ReplicaCrashFault(_Fault):
    type: Literal[FaultType.REPLICA_CRASH]
    target: TargetSpec = Field(default_factory=TargetSpec)


class ReplicaHangFault(_Fault):
    type: Literal[FaultType.REPLICA_HANG]
    target: TargetSpec = Field(default_factory=TargetSpec)


class ProxyMode(enum.StrEnum):
    DELAY = "delay"
    RESET = "reset"
    BLACKHOLE = "blackhole"
    DOWN = "down"


class ProxyFault(_Fault):
    type: Literal[FaultType.PROXY]
    between: Literal["redis", "service"] = "redis"
    mode: ProxyMode = ProxyMode.DELAY
    delay_ms: float = Field(default=100.0, ge=0, le=60_000)
    jitter_ms: float = Field(default=0.0, ge=0, le=60_000)
    share: float = Field(default=1.0, gt=0, le=1)  # of connections / chunks affected


class RedisOutageFault(_Fault):
    type: Literal[FaultType.REDIS_OUTAGE]


class CorruptArtifactFault(_Fault):
    type: Literal[FaultType.CORRUPT_ARTIFACT]
    model: str  # endpoint name in the deployment
    artifact: str = "model.onnx"


class CanaryVariant(enum.StrEnum):
    CONSTANT = "constant"  # one score for every candidate
    NAN = "nan"  # NaN for every candidate
    SLOW = "slow"  # the same scores, ``slowdown`` times the compute


class BadCanaryFault(_Fault):
    type: Literal[FaultType.BAD_CANARY]
    model: str
    variant: CanaryVariant = CanaryVariant.CONSTANT
    score: float = 0.99  # the constant variant's score
    slowdown: float = Field(default=10.0, gt=1, le=1000)  # the slow variant: × stable compute
    weight: float = Field(default=0.2, gt=0, le=1)
    alias: str = "canary"  # the alias the deployment's canary ref follows
    max_rollback_s: float = Field(default=10.0, gt=0)
    max_share: float = Field(default=0.01, ge=0, le=1)  # of all answers given by the canary


class OverloadFault(_Fault):
    """A spike of ``multiplier`` × the deployment's capacity, offered by h2load (``spike.py``);
    capacity is measured just before the load, closed loop, with the spike's own request."""

    type: Literal[FaultType.OVERLOAD]
    multiplier: float = Field(default=5.0, gt=1, le=100)  # × the measured capacity
    max_reject_ms: float | None = Field(default=None, gt=0)  # p99 of the refusals (429)
    calibrate_s: float = Field(default=2.0, gt=0, le=60)
    calibrate_connections: int = Field(default=8, ge=1, le=1000)
    # each h2load connection sends at most this many requests/s: one slow answer then delays
    # only its own connection's next send, and the offer stays close to open loop. Fewer,
    # faster connections queue fewer requests in front of the replicas' event loops: 100 halved
    # the refusal time of 50 at the same offer (docs/drills.md, "Fewer spike connections")
    connection_rps: float = Field(default=100.0, gt=0, le=10_000)
    max_connections: int = Field(default=1000, ge=1, le=10_000)
    min_offered: float = Field(default=0.9, gt=0, le=1)  # of multiplier × capacity, else deviated


class ZoneLossFault(_Fault):
    type: Literal[FaultType.ZONE_LOSS]
    zone: str


class FrontKillFault(_Fault):
    type: Literal[FaultType.FRONT_KILL]


class _RayFault(_Fault):
    """A fault on a deployment served by Ray (``--backend ray``): Ray itself must recover."""

    duration_s: float = Field(default=0.0, ge=0)
    address: str | None = "auto"  # the Ray cluster the deployment runs on
    app: str = "shopserve"  # the Ray Serve application
    recover_timeout_s: float = Field(default=120.0, gt=0)


class RayReplicaKillFault(_RayFault):
    type: Literal[FaultType.RAY_REPLICA_KILL] = FaultType.RAY_REPLICA_KILL
    deployment: str | None = None  # a model endpoint (its stable deployment); any model's else


class RayNodeKillFault(_RayFault):
    type: Literal[FaultType.RAY_NODE_KILL] = FaultType.RAY_NODE_KILL
    node_id: str | None = None  # default: the worker node with the most replicas


FaultSpec = Annotated[
    ReplicaCrashFault | ReplicaHangFault | ProxyFault | RedisOutageFault | CorruptArtifactFault
    | BadCanaryFault | OverloadFault | ZoneLossFault | FrontKillFault | RayReplicaKillFault
    | RayNodeKillFault,
    Field(discriminator="type")]


class SloSpec(_Spec):
    availability: float = Field(default=0.999, gt=0, le=1)  # answered after retries / all
    p99_ms: float | None = Field(default=None, gt=0)  # during the fault window
    p99_factor: float | None = Field(default=None, gt=0)  # × baseline p99, fault window
    fallback_ratio: float | None = Field(default=None, ge=0, le=1)
    max_rto_s: float | None = Field(default=None, ge=0)
    max_recovery_s: float | None = Field(default=None, ge=0)  # after the last fault ends
    max_lost: int | None = Field(default=None, ge=0)
    max_errors: int | None = Field(default=None, ge=0)  # lost + failed attempts
    max_nonfinite_scores: int = Field(default=0, ge=0)  # answers with a NaN or missing score
    checks: int = Field(default=3, ge=1)  # consecutive good checks that end the RTO
    check_interval_s: float = Field(default=0.25, gt=0, le=60)


class StopSpec(_Spec):
    max_error_rate: float = Field(default=0.5, gt=0, le=1)
    consecutive: int = Field(default=4, ge=1)


class ShopserveExtension(_Spec):
    name: Literal["shopserve"]
    load: LoadSpec
    faults: list[FaultSpec] = Field(default_factory=list)
    slo: SloSpec = Field(default_factory=SloSpec)
    stop: StopSpec = Field(default_factory=StopSpec)
    needs: list[str] = Field(default_factory=list)  # e.g. ["redis", "canary"]: for the catalogue


class DrillSpec(_Open):
    """A whole drill; unknown Chaos Toolkit keys (tags, contributions, ...) are kept."""

    title: str = Field(min_length=1)
    description: str = ""
    steady_state_hypothesis: HypothesisSpec | None = Field(
        default=None, alias="steady-state-hypothesis")
    method: list[ActivitySpec] = Field(default_factory=list)
    rollbacks: list[ActivitySpec] = Field(default_factory=list)
    extensions: list[dict[str, Any]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_shopserve(self) -> DrillSpec:
        names = [e.get("name") for e in self.extensions]
        if names.count("shopserve") != 1:
            raise ValueError("extensions must hold exactly one entry with name: shopserve")
        self.shopserve  # noqa: B018  validates it now, so errors carry the file's line
        return self

    @property
    def shopserve(self) -> ShopserveExtension:
        raw = next(e for e in self.extensions if e.get("name") == "shopserve")
        return ShopserveExtension.model_validate(raw)


def load_drill(path: Path) -> DrillSpec:
    """The drill in ``path``, or a ``SpecError`` naming each bad field and its line."""
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping with 'title', got {type(data).__name__}")
    return parse_drill(data, str(path), path.read_text(encoding="utf-8"))


def parse_drill(data: Any, source: str = "drill", text: str | None = None) -> DrillSpec:
    try:
        return DrillSpec.model_validate(data)
    except ValidationError as exc:
        errors = [(_fix_loc(data, e["loc"]), e["msg"]) for e in exc.errors()]
        for loc, msg in _extension_errors(data):  # checked too, so one run shows every problem
            if (loc, msg) not in errors:
                errors.append((loc, msg))
        root = yaml.compose(text) if text else None
        lines = [f"{source}: {len(errors)} problem(s)"]
        for loc, msg in errors:
            where = ".".join(str(p) for p in loc) or "(top level)"
            line = _line_of(root, loc)
            lines.append(f"  {where}{f' (line {line})' if line else ''}: {msg}")
        raise SpecError("\n".join(lines)) from exc


def _extension_errors(data: Any) -> list[tuple[tuple[int | str, ...], str]]:
    """Problems of the shopserve extension, found even when the rest of the file has some."""
    extensions = data.get("extensions") if isinstance(data, dict) else None
    if not isinstance(extensions, list):
        return []
    raw = next((e for e in extensions if isinstance(e, dict) and e.get("name") == "shopserve"),
               None)
    if raw is None:
        return []
    try:
        ShopserveExtension.model_validate(raw)
    except ValidationError as exc:
        return [(_fix_loc(data, e["loc"]), e["msg"]) for e in exc.errors()]
    return []


def _fix_loc(data: Any, loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """Errors inside the shopserve extension are re-rooted at ``extensions.N``."""
    if loc[:1] != ("extensions",) and loc and loc[0] in ShopserveExtension.model_fields:
        index = next((i for i, e in enumerate(data.get("extensions", []))
                      if isinstance(e, dict) and e.get("name") == "shopserve"), 0)
        loc = ("extensions", index, *loc)
    # discriminated unions add the tag as a path part ("proxy", "http"): drop it
    return tuple(p for p in loc if not (isinstance(p, str) and p in _TAGS))


_TAGS = {*(f.value for f in FaultType), "http", "python", "process", "DemoSource", "FileSource",
         "RangeTolerance", "bool", "int", "float", "str", "list[int]"}


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    line = None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                and part < len(node.value):
            node = node.value[part]
        else:
            node = None
    return node.start_mark.line + 1 if node is not None else line
