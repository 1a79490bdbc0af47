"""Dynamic batching: requests for one model wait briefly to be run together in one call.

Adaptive: a batch waits up to the delay for more rows only while other requests are in flight
in the replica (under load), more can still come, and they keep coming; a lone request on an
idle replica runs at once. Bounded:
when the rows waiting pass the queue limit a request is refused at once (429), and a request
whose deadline passes while it waits is failed without running.

Deadlines: when batches run on the event loop's thread (the default), no timer can fire while
a model call runs, so a request's deadline is checked when batches are formed (every waiting
request, after each batch) and bounds how long a batch waits to fill; a timer per request would
cost more than the rest of the batcher's work for a one-row request and act no sooner. With a
worker thread (``threaded``), each request has its own timer: it fails at its deadline even
while its batch runs.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from shopserve.errors import DeadlineExceededError, InputError, OverloadedError
from shopserve.monitor import tracing

if TYPE_CHECKING:
    from shopserve.serve.admission import AdmissionPolicy

# under load, a batch stops waiting for more rows once this share of the delay passed with none
QUIET_FRACTION = 0.25
P = TypeVar("P")
R = TypeVar("R")


@dataclass(slots=True)
class _Item(Generic[P, R]):
    payload: P
    size: int
    deadline: float
    future: asyncio.Future[R] = field(repr=False)
    enqueued: float = 0.0
    trace: Any = None  # the request's span context when it is traced (monitor/tracing.py)


class Batcher(Generic[P, R]):
    """Runs ``run_batch(payloads) -> results`` (same length, same order) on one worker thread."""

    def __init__(self, run_batch: Callable[[list[P]], list[R]], max_batch_size: int,
                 max_delay_s: float, queue_limit: int,
                 on_batch: Callable[[int], None] | None = None, inline: bool = True,
                 on_wait: Callable[[float], None] | None = None,
                 admission: AdmissionPolicy | None = None,
                 name: tuple[str, str] = ("", "")) -> None:
        self.run_batch = run_batch
        self.name = name  # (model, version) it runs, for its batch spans (monitor/tracing.py)
        # the replica's in-flight counts; without them every batch waits up to the delay
        self.admission = admission
        self.on_wait = on_wait  # seconds the oldest request of each batch waited
        self.inline = inline
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.queue_limit = queue_limit
        self.on_batch = on_batch
        self.waiting = 0  # rows queued, not yet running
        self._items: deque[_Item[P, R]] = deque()
        # a lower bound of the waiting requests' deadlines (inf: none waits); exact when used
        self._earliest = float("inf")
        self._wake: asyncio.Future[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shopserve-batch")
        self._task: asyncio.Task[None] | None = None

    async def submit(self, payload: P, size: int, deadline: float) -> R:
        """The result for ``payload`` (``size`` rows); never waits past ``deadline``."""
        if self.waiting + size > self.queue_limit:
            raise OverloadedError(
                f"queue full ({self.waiting} rows waiting, limit {self.queue_limit})",
                retry_after_s=max(self.max_delay_s * 4, 0.05))
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._loop())
        future: asyncio.Future[R] = loop.create_future()
        self.waiting += size
        if deadline < self._earliest:
            self._earliest = deadline
        self._items.append(_Item(payload, size, deadline, future, time.monotonic(),
                                 tracing.context()))
        admission = self.admission
        if admission is not None:
            admission.queued += 1
        wake = self._wake
        if wake is not None and not wake.done() and (
                len(self._items) == 1 or self.waiting >= self.max_batch_size
                or not self._under_load()):
            wake.set_result(None)
        # a timer instead of wait_for (no extra task per request), and only when the loop is
        # free while batches run
        timer = None if self.inline else loop.call_at(
            loop.time() + max(deadline - time.monotonic(), 0.0), _expire, future)
        try:
            return await future
        finally:
            if timer is not None:
                timer.cancel()
            if admission is not None:
                admission.queued -= 1

    def _under_load(self) -> bool:
        """Whether more rows may come: an admitted request has not reached a batcher yet, or
        another request is in flight in this replica and some connection could still send
        one (``AdmissionPolicy.idle_connection``)."""
        admission = self.admission
        return admission is None or admission.more_coming() or (
            admission.in_flight > 1 and admission.idle_connection())

    async def _sleep(self, timeout: float | None) -> None:
        """Until a request arrives (or the batch is full), or ``timeout`` seconds pass."""
        loop = asyncio.get_running_loop()
        self._wake = wake = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, _succeed, wake, None)
        try:
            await wake
        finally:
            if timer is not None:
                timer.cancel()
            self._wake = None

    async def _collect(self) -> tuple[list[_Item[P, R]], int]:
        while not self._items:
            await self._sleep(None)
        # wait for more rows only under load: at concurrency 1 the lone request runs at once
        # instead of paying the delay. Under load a batch waits while a connection could still
        # send a request (it may be in a socket buffer, where no count can see it: cutting the
        # wait short when every admitted request had arrived halved the mean batch) and while
        # requests keep arriving: once every connection's request waits here, or a quarter of
        # the delay passed without a new one, it runs (docs/serving.md, "The batch's wait")
        if self.max_delay_s > 0 and self.waiting < self.max_batch_size and self._under_load():
            delay = self.max_delay_s
            now = time.monotonic()
            if self.inline:  # never wait past a waiting request's deadline
                if self._earliest <= now:  # a bound left by requests that have run since
                    self._earliest = min(i.deadline for i in self._items)
                delay = min(delay, max(self._earliest - now, 0.0))
            end = now + delay
            gap = self.max_delay_s * QUIET_FRACTION
            while True:  # until the delay ends, the batch is full, or requests stop coming
                seen = self.waiting
                left = end - time.monotonic()
                if left <= 0:
                    break
                await self._sleep(min(left, gap))
                if (self.waiting == seen or self.waiting >= self.max_batch_size
                        or not self._under_load()):
                    break
        batch: list[_Item[P, R]] = []
        rows = 0
        while self._items and (not batch or rows + self._items[0].size <= self.max_batch_size):
            item = self._items.popleft()
            batch.append(item)
            rows += item.size
        if not self._items:
            self._earliest = float("inf")  # else a lower bound of the deadlines still waiting
        return batch, rows

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch, rows = await self._collect()
            self.waiting -= rows
            now = time.monotonic()
            if self.inline and self._earliest <= now:
                self._expire_waiting(now)
            if self.on_wait is not None:
                self.on_wait(now - batch[0].enqueued)
            live = []
            for item in batch:
                if item.deadline <= now or item.future.done():
                    if not item.future.done():
                        item.future.set_exception(DeadlineExceededError(
                            "the request's deadline passed while it waited in the queue",
                            retry_after_s=0.1))
                else:
                    live.append(item)
            with tracing.batch(self, live, now):  # a span when a request in it is traced
                if live and self.inline:
                    self._run(live, None)
                elif live:
                    await loop.run_in_executor(self._executor, self._run, live, loop)

    def _expire_waiting(self, now: float) -> None:
        """Fail the waiting requests whose deadline has passed (they never run)."""
        keep: deque[_Item[P, R]] = deque()
        earliest = float("inf")
        for item in self._items:
            if item.deadline <= now:
                self.waiting -= item.size
                _expire(item.future)
            else:
                keep.append(item)
                earliest = min(earliest, item.deadline)
        self._items, self._earliest = keep, earliest

    def _run(self, items: list[_Item[P, R]], loop: asyncio.AbstractEventLoop | None) -> None:
        """One model call; one bad request is retried alone so the others still pass.

        Inline (``loop`` None) it runs on the event loop's thread: with one ONNX thread per
        replica, a worker thread only adds GIL hand-offs (5 ms switch interval) under load.
        """
        def done(fn: Callable[[asyncio.Future[Any], Any], None],
                 future: asyncio.Future[Any], value: Any) -> None:
            if loop is None:
                fn(future, value)
            else:
                loop.call_soon_threadsafe(fn, future, value)

        if self.on_batch is not None:
            self.on_batch(sum(i.size for i in items))
        try:
            results = self.run_batch([i.payload for i in items])
        except InputError as exc:
            if len(items) == 1:
                done(_fail, items[0].future, exc)
                return
            for item in items:
                self._run([item], loop)
            return
        except Exception as exc:  # the model failed: every caller in the batch gets the error
            for item in items:
                done(_fail, item.future, exc)
            return
        for item, result in zip(items, results, strict=True):
            done(_succeed, item.future, result)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)


def _succeed(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _expire(future: asyncio.Future[Any]) -> None:
    _fail(future, DeadlineExceededError("the request's deadline passed before the model "
                                        "answered", retry_after_s=0.1))


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
