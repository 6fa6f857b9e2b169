"""Dynamic micro-batching: texts from concurrent requests share one ``classifier.predict`` call.

One worker coroutine takes requests off a queue until the batch holds ``max_batch`` texts or
``max_wait_s`` has passed since the first one arrived, runs a single predict in a one-thread
executor (so the event loop keeps serving and inference never runs concurrently with itself), and
hands every request its own slice of the records. A request larger than ``max_batch`` is split
across consecutive batches.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from socialens.core.types import Example, PredictionRecord

Predict = Callable[[list[Example]], list[PredictionRecord]]


class BatcherClosed(RuntimeError):
    """The service is shutting down and takes no new work."""


@dataclass
class BatchStats:
    requests: int = 0
    texts: int = 0
    batches: int = 0
    # batches that held texts of two or more requests: the evidence that merging happens
    merged_batches: int = 0
    max_requests_in_batch: int = 0
    max_texts_in_batch: int = 0
    predict_failures: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass
class _Pending:
    examples: list[Example]
    future: asyncio.Future
    records: list[PredictionRecord] = field(default_factory=list)
    taken: int = 0  # examples already handed to a batch

    @property
    def remaining(self) -> int:
        return len(self.examples) - self.taken


def limit_torch_threads(threads: int | None) -> None:
    """Give torch ``threads`` intra-op threads in the inference thread (torch's OpenMP setting is
    per calling thread). Leaves torch alone when the model does not use it."""
    if threads and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def default_inference_threads() -> int:
    """All cores but one, which is left to the event loop (HTTP parsing, JSON): when the loop and a
    full-width OpenMP team compete for the cores, every barrier in the forward pass waits on a
    descheduled thread, and a 2-core machine ran several times slower (docs/benchmarks.md)."""
    return max(1, (os.cpu_count() or 2) - 1)


def failed_records(examples: list[Example], message: str) -> list[PredictionRecord]:
    from socialens.core.types import error_records

    return error_records(examples, message)


class MicroBatcher:
    """Collects ``submit``ted examples into bounded batches for one predict function."""

    def __init__(
        self,
        predict: Predict,
        max_batch: int = 64,
        max_wait_s: float = 0.005,
        inference_threads: int | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must not be negative, got {max_wait_s}")
        self.predict = predict
        self.inference_threads = inference_threads
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.stats = BatchStats()
        self._waiting: deque[_Pending] = deque()
        self._wakeup: asyncio.Event | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._worker: asyncio.Task | None = None
        self._closing = False

    async def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="socialens-predict",
            initializer=limit_torch_threads,
            initargs=(self.inference_threads,),
        )
        self._closing = False
        self._worker = asyncio.create_task(self._run(), name="socialens-batcher")

    async def close(self) -> None:
        """Stop taking work, finish everything already submitted, then stop the worker."""
        if self._worker is None:
            return
        self._closing = True
        self._wakeup.set()
        await self._worker
        self._worker = None
        self._executor.shutdown(wait=True)

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._closing

    async def submit(self, examples: list[Example]) -> list[PredictionRecord]:
        """Records for ``examples``, in order, one each, once their batch (or batches) ran."""
        if not self.running:
            raise BatcherClosed("the service is shutting down")
        if not examples:
            return []
        future = asyncio.get_running_loop().create_future()
        self.stats.requests += 1
        self.stats.texts += len(examples)
        self._waiting.append(_Pending(list(examples), future))
        self._wakeup.set()
        return await future

    # -- worker ----------------------------------------------------------------------------------
    async def _next(self, deadline: float | None) -> _Pending | None:
        """The next live request, waiting until ``deadline`` (loop time; None: no limit); None when
        the deadline passed, or when closing and nothing is left."""
        loop = asyncio.get_running_loop()
        while True:
            while self._waiting:
                pending = self._waiting.popleft()
                if not pending.future.done():  # a request whose client went away is skipped
                    return pending
            if self._closing:
                return None
            self._wakeup.clear()
            if deadline is None:
                await self._wakeup.wait()
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
            except TimeoutError:
                return None

    async def _collect(self) -> list[tuple[_Pending, int, int]]:
        """One batch as (request, start, end) slices; empty once closed and drained."""
        first = await self._next(None)
        if first is None:
            return []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        parts: list[tuple[_Pending, int, int]] = []
        size = 0
        pending: _Pending | None = first
        while pending is not None:
            take = min(pending.remaining, self.max_batch - size)
            parts.append((pending, pending.taken, pending.taken + take))
            pending.taken += take
            size += take
            if pending.remaining:
                self._waiting.appendleft(pending)
                break
            if size >= self.max_batch:
                break
            pending = await self._next(deadline)
        return parts

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while parts := await self._collect():
            examples = [ex for pending, start, end in parts for ex in pending.examples[start:end]]
            records = await loop.run_in_executor(self._executor, self._predict_safely, examples)
            self._record_batch(parts, len(examples))
            offset = 0
            for pending, start, end in parts:
                pending.records.extend(records[offset : offset + end - start])
                offset += end - start
                if len(pending.records) == len(pending.examples) and not pending.future.done():
                    pending.future.set_result(pending.records)

    def _predict_safely(self, examples: list[Example]) -> list[PredictionRecord]:
        """Never raises: a failing or miscounting model yields one error record per example."""
        try:
            records = self.predict(examples)
        except Exception as exc:  # noqa: BLE001 - reported per example, the service stays up
            self.stats.predict_failures += 1
            return failed_records(examples, f"{type(exc).__name__}: {exc}")
        if len(records) != len(examples):
            self.stats.predict_failures += 1
            message = f"the model returned {len(records)} records for {len(examples)} texts"
            return failed_records(examples, message)
        return records

    def _record_batch(self, parts: list[tuple[_Pending, int, int]], n_texts: int) -> None:
        n_requests = len({id(pending) for pending, _, _ in parts})
        self.stats.batches += 1
        self.stats.merged_batches += n_requests > 1
        self.stats.max_requests_in_batch = max(self.stats.max_requests_in_batch, n_requests)
        self.stats.max_texts_in_batch = max(self.stats.max_texts_in_batch, n_texts)
