"""The ``shopserve tune`` search: a coarse sweep over process layouts, then a hill climb over
the neighbours of the best so far (batch size, queue delay, replicas), all within a time budget.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from shopserve.errors import UsageError
from shopserve.registry import Registry
from shopserve.tune.candidates import Candidate, Trial, layouts, neighbours
from shopserve.tune.measure import MeasureSettings, Workload, measure, workload
from shopserve.tune.results import MachineType, TunePlan, TuneResult, TuneTarget, this_machine

Echo = Callable[[str], None]
STARTUP_GUESS_S = 4.0  # serving start-up before the first trial has shown the real cost


class TuneSpec(BaseModel):
    """What ``shopserve tune`` is asked: a model, a target, and how long it may search."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ref: str
    measure: MeasureSettings
    budget_s: float = Field(default=300.0, gt=0, le=24 * 3600)
    max_configs: int | None = Field(default=None, ge=1)


def cost(trial: Trial, target: MeasureSettings) -> tuple[float, int, int, float]:
    """Lower is cheaper: machines needed, then replicas and threads per machine, then p99."""
    if not trial.meets:
        return (math.inf, 0, 0, math.inf)
    return (machines_needed(trial, target), trial.candidate.replicas,
            trial.candidate.replicas * trial.candidate.threads, trial.p99_ms_at_capacity or 0.0)


def machines_needed(trial: Trial, target: MeasureSettings) -> int:
    usable = trial.capacity_rps * (1 - target.headroom)
    return max(1, math.ceil(target.target_rps / usable - 1e-9))


class _Search:
    def __init__(self, spec: TuneSpec, machine: MachineType, echo: Echo) -> None:
        self.spec = spec
        self.machine = machine
        self.echo = echo
        self.started = time.monotonic()
        self.trials: dict[Candidate, Trial] = {}

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def can_afford(self) -> bool:
        if self.spec.max_configs is not None and len(self.trials) >= self.spec.max_configs:
            return False
        spent = [t.seconds for t in self.trials.values()]
        guess = max(spent) if spent else STARTUP_GUESS_S + 5 * self.spec.measure.step_s
        return self.elapsed() + guess <= self.spec.budget_s

    def best(self) -> Trial | None:
        meeting = [t for t in self.trials.values() if t.meets]
        return min(meeting, key=lambda t: cost(t, self.spec.measure)) if meeting else None

    def run(self, c: Candidate, ref: str, load: Workload, work: Path, phase: str) -> Trial:
        n = len(self.trials) + 1
        self.echo(f"[{self.elapsed():5.0f}s/{self.spec.budget_s:.0f}s] {phase} #{n}: {c.label()}")
        trial = measure(ref, c, load, self.spec.measure, work / f"trial-{n}")
        self.trials[c] = trial
        if trial.meets:
            what = (f"meets p99 ≤ {self.spec.measure.p99_ms:g} ms up to {trial.capacity_rps:.0f} "
                    f"req/s (p99 {trial.p99_ms_at_capacity:.1f} ms) → "
                    f"{machines_needed(trial, self.spec.measure)} machine(s)")
        else:
            what = f"never met p99 ≤ {self.spec.measure.p99_ms:g} ms (best {trial.best_p99_ms} ms)"
        self.echo(f"         saturates at {trial.saturation_rps:.0f} req/s; {what}")
        return trial


def tune(spec: TuneSpec, echo: Echo = print, work_dir: Path | None = None) -> TuneResult:
    """Measure candidates through the real serving path and return the cheapest that meets
    the target, with every trial. Raises ``UsageError`` when none meets the p99."""
    registry = Registry.open(spec.measure.home)
    version = registry.get(spec.ref)
    pinned = version.ref  # every trial measures the same version, whatever aliases do meanwhile
    load = workload(registry, version, spec.measure.rows_per_request)
    machine = this_machine(spec.measure.device)
    started_at = datetime.now(UTC)
    search = _Search(spec, machine, echo)
    echo(f"tuning {pinned} ({spec.ref}) on {machine}: target {spec.measure.target_rps:g} req/s "
         f"at p99 ≤ {spec.measure.p99_ms:g} ms, budget {spec.budget_s:.0f} s")
    with tempfile.TemporaryDirectory(prefix="shopserve-tune-", dir=work_dir) as tmp:
        for c in layouts(machine.cores):  # coarse sweep
            if not search.can_afford():
                break
            search.run(c, pinned, load, Path(tmp), "sweep")
        _refine(search, pinned, load, Path(tmp), machine.cores)
    if not search.trials:
        raise UsageError(f"a budget of {spec.budget_s:g} s is too short to measure even one "
                         f"configuration (about {STARTUP_GUESS_S + 5 * spec.measure.step_s:.0f} s"
                         " each); give a longer --budget")
    best = search.best()
    if best is None:
        raise UsageError(_impossible(spec, list(search.trials.values())))
    machines = machines_needed(best, spec.measure)
    plan = TunePlan(trial=best, machines=machines, replicas_per_machine=best.candidate.replicas,
                    headroom_at_target=round(
                        1 - spec.measure.target_rps / (machines * best.capacity_rps), 4))
    target = TuneTarget(rps=spec.measure.target_rps, p99_ms=spec.measure.p99_ms,
                        headroom=spec.measure.headroom,
                        rows_per_request=spec.measure.rows_per_request)
    return TuneResult(model=version.name, version=version.version, ref=spec.ref, machine=machine,
                      target=target, plan=plan, trials=list(search.trials.values()),
                      started_at=started_at, elapsed_s=round(search.elapsed(), 1),
                      budget_s=spec.budget_s)


def _refine(search: _Search, ref: str, load: Workload, work: Path, cores: int) -> None:
    """Hill climb: try the untried neighbours of the best; move when one is cheaper."""
    while True:
        best = search.best()
        if best is None:
            return
        moved = False
        for c in neighbours(best.candidate, cores):
            if c in search.trials:
                continue
            if not search.can_afford():
                return
            trial = search.run(c, ref, load, work, "refine")
            if cost(trial, search.spec.measure) < cost(best, search.spec.measure):
                moved = True
                break
        if not moved:
            return


def _impossible(spec: TuneSpec, trials: list[Trial]) -> str:
    seen = [t for t in trials if t.best_p99_ms is not None]
    if not seen:
        return (f"no configuration of {spec.ref} answered any request; see the server logs "
                "(shopserve serve) for why")
    low = min(seen, key=lambda t: t.best_p99_ms or math.inf)
    return (f"no configuration met p99 ≤ {spec.measure.p99_ms:g} ms at any load on this machine "
            f"({len(trials)} tried); the lowest p99 measured was {low.best_p99_ms} ms with "
            f"{low.candidate.label()}. Loosen --p99-ms, make the model faster "
            "(shopserve optimize) or tune on a bigger machine")
