"""Time as the in-process parts of brokerkit see it, replaceable in tests."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable

from brokerkit._error_text import value_text
from brokerkit._schedule import finite_seconds
from brokerkit.exceptions import InvalidOption

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
    """A clock that moves only when told to: ``clock.advance(31)``.

    :raises InvalidOption: ``start`` is not a finite number (an int or a float).
    """

    def __init__(self, start: float = 0.0) -> None:
        now = finite_seconds(start)
        if now is None:
            raise InvalidOption(
                f"ManualClock(start) must be a finite number of seconds (an int or a float, "
                f"any sign), got {_shown(start)}"
            )
        self._now = now
        self._lock = threading.Lock()
        self._callbacks: list[weakref.WeakMethod[Callable[[], None]]] = []

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward and wake whatever waits on it.

        :raises InvalidOption: ``seconds`` is not a finite number of seconds, 0 or more
            (NaN, infinite, negative: a clock cannot go back; not an int or a float);
            the clock stays where it was.
        """
        moved = finite_seconds(seconds)
        if moved is None or moved < 0:
            raise InvalidOption(
                "ManualClock.advance() takes a finite number of seconds, 0 or more "
                f"(an int or a float; a clock cannot go back), got {_shown(seconds)}"
            )
        with self._lock:
            self._now += moved
            self._callbacks = [ref for ref in self._callbacks if ref() is not None]
            callbacks = [ref() for ref in self._callbacks]
        for callback in callbacks:
            if callback is not None:
                callback()

    def on_advance(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (a bound method, held weakly) after every advance."""
        with self._lock:
            self._callbacks.append(weakref.WeakMethod(callback))


def _shown(value: object) -> str:
    """``value`` as a refusal shows it: its repr, shortened (an int of 400 digits is
    not worth showing whole), and its type when that is not a number."""
    shown = value_text(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{shown} ({type(value).__name__})"
    return shown
