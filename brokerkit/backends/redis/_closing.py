"""The start of a Redis broker's close, as its retry loops hear of it.

A call that retries through a lost connection (:class:`~._client_async.Reconnector`, a
pub/sub subscribe) waits between attempts for up to ``reconnect_timeout`` in all. The
broker's close begins by telling its :class:`CloseSignal` (the core's ``_wake_waits``
hook): such a wait ends at once, and the call gives up, rather than go on retrying
against a dead server after the close has returned. One class for both sides: the
waiters are the sync or asyncio :class:`~brokerkit._acompat.Waiter`, which any thread
may wake.
"""

from __future__ import annotations

import threading
from typing import Protocol

__all__ = ["CloseSignal", "WakesOnClose"]


class _Wakeable(Protocol):
    def wake(self) -> None: ...


class CloseSignal:
    """Set once, when the broker's close begins (from any thread); wakes the waits
    between two attempts under way then."""

    __slots__ = ("_began", "_lock", "_waiting")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._began = False
        self._waiting: set[_Wakeable] = set()

    @property
    def began(self) -> bool:
        """Whether the close has begun."""
        return self._began

    def begin(self) -> None:
        """The close begins: wake every wait under way (it does not wait: no I/O)."""
        with self._lock:
            self._began = True
            waiting, self._waiting = self._waiting, set()
        for waiter in waiting:
            waiter.wake()

    def watch(self, waiter: _Wakeable) -> bool:
        """Have ``waiter`` woken when the close begins; whether it already has (then
        it is not kept)."""
        with self._lock:
            if self._began:
                return True
            self._waiting.add(waiter)
            return False

    def unwatch(self, waiter: _Wakeable) -> None:
        """Forget ``waiter`` (its wait is over)."""
        with self._lock:
            self._waiting.discard(waiter)


class WakesOnClose:
    """The core's ``_wake_waits`` hook for a Redis broker (sync or asyncio) that gives
    its retry loops ``_close_signal``: a call retrying against a lost server gives up
    as the close begins (a subscribe then raises BrokerClosed), rather than hold up the
    close or retry on after it. Listed before the core's broker class."""

    _close_signal: CloseSignal

    def _wake_waits(self) -> None:
        self._close_signal.begin()
