"""Dynamic micro-batching: concurrent requests are merged into one model call, as TEI and infinity do.

Requests queue up while the model is busy; the worker takes everything queued (up to ``max_size``
items), runs one call in the model executor, and hands each request its slice of the results. It waits
up to ``wait_ms`` for more only while requests are arriving together (the last call merged several): a
lone request is never held back. Model calls never run on the event loop.

A failed call belongs to the request that caused it: when a merged call raises, each request of the
batch is run again on its own, so a bad input fails only its own request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

from prometheus_client import Histogram


class MicroBatcher:
    def __init__(self, fn: Callable[[list[Any]], Sequence[Any]], executor: Executor, max_size: int = 64,
                 wait_ms: float = 2.0, batch_sizes: Histogram | None = None, name: str = "batch") -> None:
        self.fn, self.executor = fn, executor
        self.max_size, self.wait = max_size, wait_ms / 1000.0
        self.batch_sizes, self.name = batch_sizes, name
        self._queue: asyncio.Queue | None = None
        self._busy = False  # the last call merged several requests: worth waiting a little for more
        self._running = 0  # model calls in flight
        self._worker: asyncio.Task | None = None

    @property
    def idle(self) -> bool:
        """Nothing queued and no call in flight: a request now would be a batch of one."""
        return not self._running and (self._queue is None or self._queue.empty())

    def _ensure_worker(self) -> asyncio.Queue:
        if self._queue is None or self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._run(self._queue))
        return self._queue

    async def submit(self, items: list[Any]) -> list[Any]:
        if not items:
            return []
        future = asyncio.get_running_loop().create_future()
        await self._ensure_worker().put((items, future))
        return await future

    async def _run(self, queue: asyncio.Queue) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            size = len(batch[0][0])
            deadline = loop.time() + (self.wait if self._busy else 0.0)
            while size < self.max_size:
                try:
                    item = queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(queue.get(), remaining)
                    except TimeoutError:
                        break
                batch.append(item)
                size += len(item[0])
            self._busy = len(batch) > 1
            flat = [x for items, _ in batch for x in items]
            if self.batch_sizes is not None:
                self.batch_sizes.labels(self.name).observe(len(flat))
            self._running += 1
            try:
                results = await loop.run_in_executor(self.executor, self.fn, flat)
            except Exception as exc:  # the worker lives on; the failure goes to whom it belongs
                await self._isolate(batch, exc)
                continue
            finally:
                self._running -= 1
            start = 0
            for items, future in batch:
                if not future.done():
                    future.set_result(list(results[start:start + len(items)]))
                start += len(items)

    async def _isolate(self, batch: list[tuple[list[Any], asyncio.Future]], exc: Exception) -> None:
        """Run each request of a failed batch alone: only those that fail alone get an error."""
        if len(batch) == 1:
            items, future = batch[0]
            if not future.done():
                future.set_exception(exc)
            return
        loop = asyncio.get_running_loop()
        for items, future in batch:
            if future.done():
                continue
            try:
                results = await loop.run_in_executor(self.executor, self.fn, items)
            except Exception as own:
                future.set_exception(own)
            else:
                future.set_result(list(results))

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
