"""Dynamic batching: concurrent requests become one batch of work, off the event loop.

A :class:`MicroBatcher` owns one worker thread.  Requests are submitted from the event loop
(``await batcher.submit(item, size=...)``); the worker takes the oldest waiting request, then
keeps gathering until the batch holds ``max_batch`` units (texts, queries) or ``max_wait_ms``
has passed since that first request, and runs ``run_batch(items)`` once for all of them (one
encoder call for every text of every request, one index search for every query).  Each request
gets its own result or its own exception back.

Why: a transformer encodes 32 short texts in little more time than one (matrix products use the
cores better; per-call overhead is paid once), so under concurrency the batch amortises the
model.  The wait is counted from the first request's arrival: while the worker is busy, requests
queue up and the next batch takes them at once (no added wait); only a request that finds the
worker idle waits up to ``max_wait_ms`` (default 2 ms) for company.  The same idea as
text-embeddings-inference's and Infinity's batching queues.

Back-pressure: the queue holds at most ``max_queue`` units; a submit beyond that raises
:class:`QueueFull` at once (the server answers 503 with ``Retry-After``), so a burst cannot
grow memory or latency without bound.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)
Item = TypeVar("Item")
Result = TypeVar("Result")


class QueueFull(Exception):
    """The batching queue is full: the caller should retry later (HTTP 503 + Retry-After)."""

    def __init__(self, name: str, waiting: int, limit: int) -> None:
        super().__init__(f"{name}: {waiting} units waiting, limit {limit}")
        self.retry_after = 1


@dataclass
class _Pending(Generic[Item]):
    item: Item
    size: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    arrived: float = field(default_factory=time.perf_counter)


@dataclass
class BatchStats:
    """What the batcher did (for /metrics and benchmarks)."""

    batches: int = 0
    items: int = 0
    units: int = 0
    largest: int = 0
    rejected: int = 0
    busy_seconds: float = 0.0


class MicroBatcher(Generic[Item, Result]):
    def __init__(
        self,
        run_batch: Callable[[list[Item]], Sequence[Result | BaseException]],
        *,
        name: str,
        max_batch: int = 64,
        max_wait_ms: float = 2.0,
        max_queue: int = 4096,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_queue < max_batch or max_wait_ms < 0:
            raise ValueError("need max_batch >= 1, max_queue >= max_batch and max_wait_ms >= 0")
        self.name = name
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.stats = BatchStats()
        self._run_batch = run_batch
        self._on_batch = on_batch  # told each batch's size in units (a metrics hook)
        self._queue: deque[_Pending[Item]] = deque()
        self._units = 0
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        """Units (texts, queries) waiting for the worker."""
        return self._units

    async def submit(self, item: Item, *, size: int = 1) -> Result:
        """Queue ``item`` (``size`` units) and wait for its result; :class:`QueueFull` when full."""
        loop = asyncio.get_running_loop()
        pending: _Pending[Item] = _Pending(item, max(1, size), loop, loop.create_future())
        with self._cond:
            if self._closed:
                raise RuntimeError(f"batcher {self.name} is closed")
            if self._units + pending.size > self.max_queue and self._queue:
                self.stats.rejected += 1
                raise QueueFull(self.name, self._units, self.max_queue)
            self._queue.append(pending)
            self._units += pending.size
            self._cond.notify()
        return await pending.future

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=30)

    def _take(self) -> list[_Pending[Item]] | None:
        """The next batch: wait for a first request, then gather until full or ``max_wait`` after it."""
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed and not self._queue:
                return None
            batch = [self._queue.popleft()]
            units = batch[0].size
            deadline = batch[0].arrived + self.max_wait
            while units < self.max_batch:
                if self._queue:
                    if units + self._queue[0].size > self.max_batch:
                        break
                    nxt = self._queue.popleft()
                    batch.append(nxt)
                    units += nxt.size
                    continue
                left = deadline - time.perf_counter()
                if left <= 0 or self._closed:
                    break
                self._cond.wait(timeout=left)
            self._units -= units
            return batch

    def _work(self) -> None:
        while (batch := self._take()) is not None:
            started = time.perf_counter()
            try:
                results: Sequence[Any] = self._run_batch([p.item for p in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"batcher {self.name}: {len(results)} results for {len(batch)} requests")
            except BaseException as err:  # every waiting request learns of the failure
                log.debug("batch of %d failed", len(batch), exc_info=True)
                results = [err] * len(batch)
            self.stats.busy_seconds += time.perf_counter() - started
            self.stats.batches += 1
            self.stats.items += len(batch)
            units = sum(p.size for p in batch)
            self.stats.units += units
            self.stats.largest = max(self.stats.largest, units)
            if self._on_batch is not None:
                self._on_batch(units)
            for pending, result in zip(batch, results, strict=True):
                pending.loop.call_soon_threadsafe(_resolve, pending.future, result)


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():  # the client went away (the request was cancelled)
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
