"""Capacity planning from measurements: how many replicas and machines, which batching, how big
a cache. ``resolve_replicas`` turns ``replicas: auto`` into the latest measured answer.
"""

from shopserve.tune.cacheplan import CachePlan, CachePlanSpec, simulate, write_plan
from shopserve.tune.cachesim import KeyCounts, LruTtlSimulator
from shopserve.tune.candidates import Candidate, LoadStep, Trial
from shopserve.tune.measure import MeasureSettings
from shopserve.tune.report import write_outputs
from shopserve.tune.requestlog import demo_log, iter_requests
from shopserve.tune.results import (
    MachineType,
    TunePlan,
    TuneResult,
    latest_result,
    load_tuned_deployment,
    resolve_replicas,
    save_result,
    this_machine,
)
from shopserve.tune.search import TuneSpec, tune

__all__ = [
    "CachePlan",
    "CachePlanSpec",
    "Candidate",
    "KeyCounts",
    "LoadStep",
    "LruTtlSimulator",
    "MachineType",
    "MeasureSettings",
    "Trial",
    "TunePlan",
    "TuneResult",
    "TuneSpec",
    "demo_log",
    "iter_requests",
    "latest_result",
    "load_tuned_deployment",
    "resolve_replicas",
    "save_result",
    "simulate",
    "this_machine",
    "tune",
    "write_outputs",
    "write_plan",
]
