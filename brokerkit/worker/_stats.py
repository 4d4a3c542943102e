"""What a handler has done so far: counters any thread or task may read."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["HandlerStats", "StatsSnapshot"]


@dataclass(frozen=True)
class StatsSnapshot:
    """The counters of one handler at one moment.

    :ivar processed: deliveries whose handler returned (and that were acked, unless the
        handler settled them itself).
    :ivar failed: deliveries whose handler raised (a handler thread too that raised
        after a hard stop abandoned it), or was cancelled by a hard stop of the
        asyncio worker (its delivery nacked, an attempt counted), or that the worker
        failed to settle on an error of its own; each attempt counted once.
    :ivar retried: failed deliveries handed back to be delivered again.
    :ivar dead_lettered: deliveries sent to the dead-letter topic (failed at the retry
        limit, or with a body that did not validate).
    :ivar in_flight: handlers running now.
    :ivar peak_in_flight: the most handlers that ever ran at once.
    :ivar waiting: deliveries fetched and waiting for a free slot, now.
    :ivar peak_waiting: the most deliveries that ever waited at once.
    :ivar at: when the snapshot was taken (``time.monotonic()``).
    """

    topic: str
    name: str
    processed: int
    failed: int
    retried: int
    dead_lettered: int
    in_flight: int
    peak_in_flight: int
    waiting: int
    peak_waiting: int
    at: float

    def rate(self, earlier: StatsSnapshot | None) -> float:
        """Deliveries processed per second since ``earlier`` (0.0 without one)."""
        if earlier is None or self.at <= earlier.at:
            return 0.0
        return (self.processed - earlier.processed) / (self.at - earlier.at)


class HandlerStats:
    """The live counters of one handler (thread-safe; a plain lock, never held across
    I/O, so the same class serves threads and tasks)."""

    def __init__(self, topic: str, name: str) -> None:
        self.topic = topic
        self.name = name
        self._lock = threading.Lock()
        self.processed = self.failed = self.retried = self.dead_lettered = 0
        self.in_flight = self.peak_in_flight = self.waiting = self.peak_waiting = 0
        self._waiting_now: Callable[[], int] | None = None

    def count_waiting(self, waiting_now: Callable[[], int] | None) -> None:
        """Read ``waiting`` from ``waiting_now`` (what waits for a slot at this moment,
        cheap and safe to call from any thread) whenever a snapshot is taken; None:
        nothing waits any more (the handler's subscription is closed)."""
        with self._lock:
            self._waiting_now = waiting_now
            if waiting_now is None:
                self.waiting = 0

    def started(self, waiting: int) -> None:
        """A handler began; ``waiting`` deliveries still wait for a slot."""
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            self.waiting = waiting
            self.peak_waiting = max(self.peak_waiting, waiting)

    def finished(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def count(self, what: str) -> None:
        """Add one to ``processed``, ``failed``, ``retried`` or ``dead_lettered``."""
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)

    def snapshot(self) -> StatsSnapshot:
        waiting_now = self._waiting_now
        waiting = None if waiting_now is None else waiting_now()
        with self._lock:
            if waiting is not None and self._waiting_now is waiting_now:
                self.waiting = waiting
                self.peak_waiting = max(self.peak_waiting, waiting)
            return StatsSnapshot(
                self.topic,
                self.name,
                self.processed,
                self.failed,
                self.retried,
                self.dead_lettered,
                self.in_flight,
                self.peak_in_flight,
                self.waiting,
                self.peak_waiting,
                time.monotonic(),
            )
