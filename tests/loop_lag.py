"""How late an asyncio event loop wakes a ticker task: the measure of a blocked loop.

A blocking call on the loop's thread (a sync socket read, a sleep, a lock) stalls the
ticker for its whole length, whatever the machine's load. A busy machine stalls it
too, by leaving the thread waiting for a CPU; Linux counts that wait (schedstat), so
:attr:`Ticker.net` leaves it out and stays a measure of the code alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Iterator
from types import TracebackType

__all__ = ["Ticker", "frozen_heap", "runqueue_wait"]


def runqueue_wait() -> float:
    """Seconds this thread has spent ready to run but waiting for a CPU (Linux's
    schedstat; 0 elsewhere)."""
    try:
        with open("/proc/thread-self/schedstat") as stat:
            return int(stat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


class Ticker:
    """Asks for 1 ms sleeps on the running loop while the ``async with`` body runs.

    ``wall`` is the longest lag seen; ``net`` the longest lag less the time the
    scheduler kept the thread waiting for a CPU meanwhile.
    """

    interval = 0.001

    def __init__(self) -> None:
        self.wall = 0.0
        self.net = 0.0
        self.ticks = 0
        self._done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Ticker:
        self._task = asyncio.create_task(self._tick())
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._done.set()
        assert self._task is not None
        await self._task

    async def _tick(self) -> None:
        while not self._done.is_set():
            before, queued = time.perf_counter(), runqueue_wait()
            await asyncio.sleep(self.interval)
            lag = time.perf_counter() - before - self.interval
            self.wall = max(self.wall, lag)
            self.net = max(self.net, lag - (runqueue_wait() - queued))
            self.ticks += 1

    def report(self, what: str) -> str:
        return (
            f"{what}: max event-loop lag {self.wall * 1000:.1f} ms "
            f"({self.net * 1000:.1f} ms less CPU-queue waits), {self.ticks} ticks"
        )


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Freeze what earlier tests left on the heap, so that a full garbage collection of
    it is not charged to the loop under test (a long-running service does the same after
    start-up); what the test itself allocates is still collected."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
