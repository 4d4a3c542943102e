"""Time as the in-process parts of brokerkit see it, replaceable in tests."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock:
    """A source of the current time, in seconds.

    Backends that judge leases in process (the memory backend) read time through
    a clock, so that a test can advance it past a visibility timeout instead of
    sleeping.
    """

    def now(self) -> float:
        """The current time in seconds; only differences between readings matter."""
        raise NotImplementedError

    def on_advance(self, callback: Callable[[], None]) -> None:
        """Ask to be called whenever the clock jumps forward (never, for real time)."""


class SystemClock(Clock):
    """Real monotonic time."""

    def now(self) -> float:
        return time.monotonic()


class ManualClock(Clock):
    """A clock that moves only when told to: ``clock.advance(31)``."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self._callbacks: list[weakref.WeakMethod[Callable[[], None]]] = []

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward and wake whatever waits on it."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back; got {seconds} seconds")
        with self._lock:
            self._now += seconds
            self._callbacks = [ref for ref in self._callbacks if ref() is not None]
            callbacks = [ref() for ref in self._callbacks]
        for callback in callbacks:
            if callback is not None:
                callback()

    def on_advance(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (a bound method, held weakly) after every advance."""
        with self._lock:
            self._callbacks.append(weakref.WeakMethod(callback))
