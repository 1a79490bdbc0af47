"""The drill lifecycle, shaped like Chaos Toolkit's ``run_experiment`` but typed, and with faults
undone and rollbacks run whatever happens (deviation, stop condition, error, Ctrl-C)::

    lock → steady state before → [load ∥ faults ∥ method ∥ status watch ∥ stop conditions]
         → every fault undone → steady state after → rollbacks → measurements → verdict
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from typing import Any

from shopserve.drill.activities import now_iso, run_activity, run_hypothesis
from shopserve.drill.faults import Fault, FaultContext, build_fault
from shopserve.drill.faults.base import FaultState, StatusLog
from shopserve.drill.journal import build_journal
from shopserve.drill.load import LoadRunner, Outcome, Sample, build_requests
from shopserve.drill.proxy import FaultProxy
from shopserve.drill.results import DrillStatus
from shopserve.drill.spec import DrillSpec, ProxyFault
from shopserve.drill.target import DrillLock, DrillTarget
from shopserve.errors import UsageError


class DrillRunner:
    """Runs one drill against one target; ``run()`` returns the journal (a dict)."""

    def __init__(self, drill: DrillSpec, target: DrillTarget) -> None:
        self.drill = drill
        self.ext = drill.shopserve
        self.target = target
        self.faults: list[Fault] = [build_fault(f) for f in self.ext.faults]
        self.samples: list[Sample] = []
        self.status = DrillStatus.COMPLETED
        self.abort_reason: str | None = None
        self.run_records: list[dict[str, Any]] = []
        self.env = {"admin_token": target.admin_token, "home": target.home}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._undos: dict[int, asyncio.Future[None]] = {}
        self.started = False  # True once anything may have been touched
        self._watcher: asyncio.Task[None] | None = None

    def check(self) -> None:
        """Refuse, before anything is touched, a drill this target cannot take."""
        for fault in self.faults:
            if fault.needs_admin and not self.target.admin_token:
                raise UsageError(f"fault {fault.name} needs the admin API: give --admin-token "
                                 "(or SHOPSERVE_ADMIN_TOKEN), or run with --deployment")
            fault.check_target(self.target)
        if self.target.admin_token:
            self.target.status()  # unreachable or a wrong token: refused now, not mid-drill
        self.requests = build_requests(self.ext.load)

    def run(self) -> dict[str, Any]:
        """Run to the end; Ctrl-C (SIGINT) undoes the faults and runs the rollbacks first.

        Errors raised here mean the drill did not start (nothing was touched); once it has
        started, every outcome is in the journal.
        """
        lock = DrillLock(self.target.url).acquire()
        try:
            self.check()
            self.started = True
            return asyncio.run(self._main())
        finally:
            lock.release()

    async def _main(self) -> dict[str, Any]:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, task.cancel)
        started, t_start = now_iso(), time.monotonic()
        ctx = FaultContext(self.target, time.monotonic(), StatusLog())
        before = after = None
        rollbacks: list[dict[str, Any]] = []
        try:
            before = await asyncio.to_thread(
                run_hypothesis, self.drill.steady_state_hypothesis, self.target.url, self.env)
            if before is not None and not before["steady_state_met"]:
                self.status = DrillStatus.FAILED
            else:
                await self._experiment(ctx)
                after = await asyncio.to_thread(
                    run_hypothesis, self.drill.steady_state_hypothesis, self.target.url, self.env)
        except asyncio.CancelledError:
            task.uncancel()
            self.status = DrillStatus.INTERRUPTED
        except Exception as exc:  # recorded: the journal says why the drill stopped early
            self.status = DrillStatus.FAILED
            self.abort_reason = f"drill stopped by an error: {type(exc).__name__}: {exc}"
        finally:
            # a second Ctrl-C must not cut the undo short: it is only acknowledged
            loop.add_signal_handler(signal.SIGINT, self._still_undoing)
            try:
                await self._undo_all(ctx)
                self._merge_fault_samples()
                await self._stop_watcher()
                for activity in self.drill.rollbacks:
                    rollbacks.append(await asyncio.to_thread(
                        run_activity, activity, self.target.url, self.env))
                self._close_proxy()
            finally:
                loop.remove_signal_handler(signal.SIGINT)
        return build_journal(self, ctx, started, time.monotonic() - t_start,
                             {"before": before, "after": after, "during": []}, rollbacks)

    def _merge_fault_samples(self) -> None:
        """Requests a fault sent itself (the overload spike's h2load) join the load's."""
        extra = [s for fault in self.faults for s in fault.samples()]
        if extra:
            self.samples = sorted([*self.samples, *extra], key=lambda s: s.t)

    async def _stop_watcher(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)

    @staticmethod
    def _still_undoing() -> None:
        print("shopserve drill: undoing the faults and running the rollbacks; please wait",
              file=sys.stderr, flush=True)

    async def _experiment(self, ctx: FaultContext) -> None:
        url = self.target.url
        if any(isinstance(f, ProxyFault) and f.between == "service" for f in self.ext.faults):
            self.target.service_proxy = await asyncio.to_thread(self._service_proxy)
            url = f"http://127.0.0.1:{self.target.service_proxy.port}"
        for fault in self.faults:  # e.g. the overload spike measures the capacity first
            await asyncio.to_thread(fault.prepare, ctx, self.ext.load, self.requests)
        load = LoadRunner(self.ext.load, url, self.requests)
        ctx.t0 = time.monotonic()
        load_task = asyncio.create_task(load.run(ctx.t0))
        helpers = [asyncio.create_task(self._drive(f, ctx)) for f in self.faults]
        self._watcher = asyncio.create_task(self._watch_status(ctx))  # until faults are undone
        helpers.append(asyncio.create_task(self._stop_conditions(load, load_task)))
        helpers.append(asyncio.create_task(self._method()))
        try:
            self.samples = await load_task
        except asyncio.CancelledError:
            if self.abort_reason is None:
                raise
            self.samples = load.samples
            self.status = DrillStatus.ABORTED
        finally:
            self.samples = self.samples or load.samples
            for helper in helpers[:-1]:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

    def _service_proxy(self) -> FaultProxy:
        from urllib.parse import urlsplit

        where = urlsplit(self.target.url)
        return FaultProxy(where.hostname or "127.0.0.1", where.port or 80).start()

    def _close_proxy(self) -> None:
        if self.target.service_proxy is not None:
            self.target.service_proxy.close()
            self.target.service_proxy = None

    async def _method(self) -> None:
        for activity in self.drill.method:
            self.run_records.append(await asyncio.to_thread(
                run_activity, activity, self.target.url, self.env))

    async def _drive(self, fault: Fault, ctx: FaultContext) -> None:
        await asyncio.sleep(max(ctx.t0 + fault.spec.start_s - time.monotonic(), 0))
        started = now_iso()
        future = asyncio.get_running_loop().run_in_executor(None, fault.inject, ctx)
        fault.detail["_inject"] = future
        try:
            await asyncio.shield(future)
        except Exception as exc:  # recorded: the verdict says the fault could not be injected
            fault.state, fault.error = FaultState.INJECT_FAILED, f"{type(exc).__name__}: {exc}"
            self._record(fault, started, "failed")
            return
        fault.state, fault.injected_at = FaultState.INJECTED, ctx.now()
        self._record(fault, started, "succeeded")
        await asyncio.sleep(fault.spec.duration_s)
        await self._undo(fault, ctx)

    def _record(self, fault: Fault, started: str, status: str) -> None:
        provider = {"type": "shopserve", **fault.spec.model_dump(mode="json")}
        record: dict[str, Any] = {
            "activity": {"type": "action", "name": f"shopserve fault: {fault.name}",
                         "provider": provider},
            "status": status, "start": started, "end": now_iso(), "output": None}
        if fault.error:
            record["exception"] = [fault.error]
        self.run_records.append(record)

    async def _undo(self, fault: Fault, ctx: FaultContext) -> None:
        """Undo ``fault`` once: a caller cancelled while the undo runs (the load ended, Ctrl-C)
        leaves it running, and the next caller waits for that same undo instead of a second."""
        undo = self._undos.get(id(fault))
        if undo is None:
            if fault.state is not FaultState.INJECTED:
                return
            undo = asyncio.ensure_future(asyncio.to_thread(_undo_now, fault, ctx))
            self._undos[id(fault)] = undo
        await asyncio.shield(undo)

    async def _undo_all(self, ctx: FaultContext) -> None:
        for fault in self.faults:
            pending = fault.detail.pop("_inject", None)
            if pending is not None and fault.state is FaultState.PENDING:
                with contextlib.suppress(Exception):
                    await pending  # an injection still running finishes before it is undone
                fault.state, fault.injected_at = FaultState.INJECTED, ctx.now()
            elif fault.state is FaultState.INJECT_FAILED and fault.detail.get("version"):
                fault.state = FaultState.INJECTED  # half-done: its version must still go
            await self._undo(fault, ctx)

    async def _watch_status(self, ctx: FaultContext) -> None:
        if not self.target.admin_token:
            return
        while True:
            with contextlib.suppress(Exception):
                status = await asyncio.to_thread(self.target.status)
                ctx.status_log.snapshots.append((ctx.now(), status))
            await asyncio.sleep(0.2)

    async def _stop_conditions(self, load: LoadRunner, load_task: asyncio.Task[Any]) -> None:
        stop, step = self.ext.stop, self.ext.slo.check_interval_s
        bad, seen = 0, 0
        while not load_task.done():
            await asyncio.sleep(step)
            done = load.samples[seen:]
            seen += len(done)
            if not done:
                continue
            rate = sum(s.outcome is Outcome.LOST for s in done) / len(done)
            bad = bad + 1 if rate > stop.max_error_rate else 0
            if bad >= stop.consecutive:
                self.abort_reason = (f"error rate {rate:.2f} > {stop.max_error_rate} for "
                                     f"{bad} checks in a row")
                load_task.cancel()
                return


def _undo_now(fault: Fault, ctx: FaultContext) -> None:
    """Runs on a worker thread; an undo that failed is a failed rollback (exit code 4)."""
    try:
        fault.undo(ctx)
    except Exception as exc:
        fault.state, fault.error = FaultState.UNDO_FAILED, f"{type(exc).__name__}: {exc}"
    else:
        fault.state, fault.undone_at = FaultState.UNDONE, ctx.now()
