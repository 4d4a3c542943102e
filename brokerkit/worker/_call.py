"""Where one call of a worker's handler is (not started, running in a thread, started
on the loop, ended), so that a hard stop knows what to do with its delivery; shared by
the sync and the asyncio runner."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from brokerkit._compat import is_async_callable
from brokerkit._hooks import RELAY

__all__ = ["HandlerCall", "NotStarted", "Settleable"]


class Settleable(Protocol):
    """A delivery, sync or asyncio, as far as a call needs it."""

    @property
    def settled(self) -> bool: ...

    def _mark_settled(self) -> None: ...


class NotStarted(Exception):
    """A plain handler abandoned before its call started: it never starts."""


class HandlerCall:
    """Where one call of a handler is, so that a hard stop knows what to do with its
    delivery: the handler not started yet, running in a thread, or started on the
    loop (or ended). A handler thread that ends after a hard stop abandoned it lets
    its delivery go (marks it settled: nobody renews its lease any more), so that it
    comes back after the visibility timeout even while the broker stays open, and
    ends its delivery hooks ``"unsettled"`` (with the handler's error, if it raised)."""

    PENDING = "pending"
    RUNNING_IN_THREAD = "running in a thread"
    STARTED = "started"

    def __init__(self, delivery: Settleable) -> None:
        self._delivery = delivery
        self._lock = threading.Lock()
        self._state = self.PENDING
        self._abandoned = False
        #: Whether its handler thread ended after an abandon, its delivery unsettled:
        #: the delivery is marked settled, and the call's result must be dropped.
        self.dropped = False
        #: Whether its handler returned (set by the runner before the ack, and by a
        #: handler thread as it ends): a hard stop that cuts the ack short, or comes
        #: before the slot takes the thread's result, does not make it a failure.
        self.returned = False
        #: Why this attempt was counted ``failed`` (None: it was not): counted once,
        #: however many steps see it fail (a hard stop that cuts short the nack of a
        #: failed handler).
        self.failure: str | None = None
        #: What its handler raised (None: nothing yet), for a line about the failure
        #: logged by a later step (a hard stop that cut short the dead-letter nack).
        self.error: BaseException | None = None
        self._ended_with: BaseException | None = None
        self._on_dropped: Callable[[BaseException | None], None] | None = None

    @property
    def in_thread(self) -> bool:
        """Whether a plain handler is running in a thread now."""
        with self._lock:
            return self._state == self.RUNNING_IN_THREAD

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """``function``, noting when it starts and ends. A plain function is wrapped
        (it may run in a pool thread, and does not start at all once abandoned); a
        coroutine function counts as started when it is called."""
        if is_async_callable(function):
            with self._lock:
                self._state = self.STARTED
            return function

        def called(*args: Any) -> Any:
            with self._lock:
                if self._abandoned:
                    raise NotStarted
                self._state = self.RUNNING_IN_THREAD
            try:
                result = function(*args)
            except BaseException as exc:
                self._ended(exc)
                raise
            self._ended(None)
            return result

        return called

    def _ended(self, error: BaseException | None) -> None:
        with self._lock:
            self._state = self.STARTED
            self._ended_with = error
            if error is None:
                self.returned = True
            if self._abandoned and not self._delivery.settled:
                self._delivery._mark_settled()
                self.dropped = True
            on_dropped = self._on_dropped if self.dropped else None
        if self.dropped:
            RELAY.deliver_end(self._delivery, "unsettled", error)
        if on_dropped is not None:
            on_dropped(error)

    def when_dropped(self, callback: Callable[[BaseException | None], None]) -> None:
        """Call ``callback`` with what the handler raised (None: it returned) once its
        thread ends after an abandon, its result dropped (at once if it has ended so):
        for a slot that has left the call (the asyncio worker's, cancelled), which
        will not see the result itself."""
        with self._lock:
            if self._state == self.RUNNING_IN_THREAD:
                self._on_dropped = callback
                return
            dropped, error = self.dropped, self._ended_with
        if dropped:
            callback(error)

    def abandon(self) -> str:
        """Where the call is now; a plain function not yet started never will be."""
        with self._lock:
            self._abandoned = True
            return self._state
