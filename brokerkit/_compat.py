"""The primitives where brokerkit's sync and async code really differ: the sync side.

Generated sync modules import these names from here wherever their asyncio source
imports them from :mod:`brokerkit._acompat`; the two modules keep the same names and
signatures (a thread here, a task there). See ``scripts/generate_sync.py``.
"""

from __future__ import annotations

import concurrent.futures
import inspect
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "Background",
    "CancelCount",
    "Event",
    "HandlerCalls",
    "Lock",
    "Waiter",
    "acquire",
    "checkpoint",
    "fetch_shielded",
    "home_loop",
    "is_async_callable",
    "keep_cancellation",
    "leaves_running",
    "on_loop",
    "on_signals",
    "settle_orphans",
    "shielded",
    "sleep",
    "spawn",
]

_T = TypeVar("_T")

Lock = threading.Lock
Event = threading.Event
sleep = time.sleep


def acquire(lock: threading.Lock, timeout: float) -> bool:
    """Take ``lock``, waiting at most ``timeout`` seconds (0: only if it is free);
    whether it was taken. The caller releases it."""
    return lock.acquire(timeout=max(timeout, 0.0))


class Waiter:
    """A one-shot wake-up that any thread may trigger, waited for by one consumer."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = threading.Event()

    def wake(self) -> None:
        """Wake the waiter (from any thread; safe to call more than once)."""
        self._event.set()

    def wait(self, timeout: float) -> bool:
        """Block until woken or for ``timeout`` seconds; whether it was woken."""
        return self._event.wait(timeout)


class Background:
    """Work running beside the caller (a daemon thread), from :func:`spawn`."""

    def __init__(self, thread: threading.Thread) -> None:
        self._thread = thread

    @property
    def current(self) -> bool:
        """Whether the caller is this work itself."""
        return self._thread is threading.current_thread()

    @property
    def done(self) -> bool:
        """Whether the work has ended."""
        return not self._thread.is_alive()

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the work to end."""
        if not self.current:
            self._thread.join(timeout)


def spawn(work: Callable[[], object], name: str) -> Background:
    """Run ``work()`` in a daemon thread called ``name``."""
    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    return Background(thread)


#: The attribute of an exception that interrupted a fetch whose work goes on: see
#: :func:`leaves_running`.
_LEFT_RUNNING = "_brokerkit_fetch_left_running"


def leaves_running(interrupted: BaseException, going_on: concurrent.futures.Future[Any]) -> None:
    """Say, on ``interrupted`` (raised into a thread waiting for a fetch: Ctrl-C's
    KeyboardInterrupt), that the fetch was not stopped: it goes on elsewhere (a loop
    bridge's event loop) and hands back what it brings itself; ``going_on`` ends once
    it has. :func:`fetch_shielded` keeps it among the subscription's orphans, which
    its next receive and its close wait for (:func:`settle_orphans`)."""
    setattr(interrupted, _LEFT_RUNNING, going_on)


def fetch_shielded(
    fetch: Callable[[], _T], hand_back: Callable[[_T], None], orphans: set[Any]
) -> _T:
    """``fetch()``. A thread is never cancelled, but it can be interrupted (Ctrl-C
    raises KeyboardInterrupt into the main thread) while it waits for a fetch that
    goes on elsewhere, on a loop bridge's event loop: the backend then says so
    (:func:`leaves_running`), hands back what that fetch brings itself, and what it
    left running is kept in ``orphans`` until it ends, as the async twin keeps a
    fetch its caller's cancellation interrupted (``hand_back`` is for the async
    twin's own use)."""
    try:
        return fetch()
    except BaseException as exc:
        going_on: concurrent.futures.Future[Any] | None = getattr(exc, _LEFT_RUNNING, None)
        if going_on is not None:
            orphans.add(going_on)
            going_on.add_done_callback(orphans.discard)
        raise


def shielded(work: Callable[[], _T], running: set[Any]) -> _T:
    """``work()``: a thread is never interrupted (the async twin carries the work to its
    end past a cancellation)."""
    return work()


def home_loop() -> object:
    """None: threads have no event loop (the async twin returns the running loop)."""
    return None


def on_loop(loop: object, work: Callable[[], object], timeout: float) -> bool:
    """``work()``, here, and True: any thread may work on an object made in another
    (the async twin runs it on the event loop the object belongs to)."""
    work()
    return True


def settle_orphans(orphans: set[Any], timeout: float) -> None:
    """Wait (``timeout`` seconds at most) for the fetches that interrupted receives left
    running (:func:`fetch_shielded`), and for their hand-backs."""
    if orphans:
        concurrent.futures.wait(list(orphans), timeout=timeout)


def checkpoint() -> None:
    """Nothing to do: threads are preempted (the async twin yields to the event loop)."""


class CancelCount:
    """Nothing to count: a thread is never cancelled (see the async twin)."""

    __slots__ = ()

    def raise_lost(self) -> None:
        """Nothing to raise."""


def keep_cancellation(result: _T) -> _T:
    """``result``: a thread is never cancelled (the async twin raises a cancellation a
    callee lost)."""
    return result


class HandlerCalls:
    """How a worker calls its handlers: in the worker's own slot thread (each slot is
    a thread, so the pool is the slots). Coroutine functions are refused at
    registration: run them under :class:`brokerkit.aio.Worker`."""

    #: What a handler raises that stops the program, not the handler: none, as a
    #: handler runs in a thread of its own and the program's signals reach the main
    #: thread only.
    program_stops: tuple[type[BaseException], ...] = ()

    #: Whether handlers may be coroutine functions.
    takes_coroutines = False

    def __init__(self, threads: int) -> None:
        pass

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function(*args)`` and return its result."""
        result = function(*args)
        if inspect.isawaitable(result):  # a callable object whose __call__ is async
            close = getattr(result, "close", None)
            if close is not None:
                close()
            raise TypeError("the handler returned an awaitable; use brokerkit.aio.Worker")
        return result

    def close(self) -> None:
        """Nothing to release."""


def is_async_callable(function: Any) -> bool:
    """Whether calling ``function`` gives a coroutine: a coroutine function, a partial
    of one, or an object whose ``__call__`` is one."""
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        type(function).__call__
    )


def on_signals(signals: tuple[int, ...], callback: Callable[[int], None]) -> Callable[[], None]:
    """Call ``callback(signal number)`` on each of ``signals``; return the function that
    restores the previous handlers. Outside the main thread (where a program cannot
    take signals) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {n: signal.signal(n, lambda number, frame: callback(number)) for n in signals}

    def restore() -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)

    return restore
