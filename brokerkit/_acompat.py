"""The primitives where brokerkit's sync and async code really differ: the asyncio side.

The asyncio sources (``*_async.py``) import these names; the generated sync modules
import the same names from :mod:`brokerkit._compat`. See ``scripts/generate_sync.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import queue
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Literal, TypeVar

from brokerkit._compat import is_async_callable
from brokerkit._logging import delivery_fields

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
    "keep_cancellation",
    "on_loop",
    "on_signals",
    "settle_orphans",
    "shielded",
    "sleep",
    "spawn",
    "within",
]

_T = TypeVar("_T")

log = logging.getLogger("brokerkit")

sleep = asyncio.sleep


class Lock(asyncio.Lock):
    """An :class:`asyncio.Lock` that a task of another event loop than its holder's
    cannot wait for: it raises :class:`RuntimeError` at once. asyncio's lock would
    let it wait, and its holder's release would then set that task's future from the
    holder's thread, which never wakes the waiting loop: the task waited for ever (a
    subscription made on one thread's loop and received from another's, beside a
    receive of its own loop). Taking it when free, from any loop, is as before."""

    #: the loop of the task holding the lock (None: free)
    _holder: asyncio.AbstractEventLoop | None = None

    async def acquire(self) -> Literal[True]:
        """As :meth:`asyncio.Lock.acquire`.

        :raises RuntimeError: the lock is held by a task of another event loop."""
        loop = asyncio.get_running_loop()
        holder = self._holder
        if holder is not None and holder is not loop and self.locked():
            raise RuntimeError(
                "brokerkit: waiting here for a task of another event loop, which would "
                "never wake this one: a subscription belongs to the event loop it was "
                "made on (use it there; a broker may be shared, see docs/asyncio.md)"
            )
        await super().acquire()
        self._holder = loop
        return True

    def release(self) -> None:
        """As :meth:`asyncio.Lock.release`."""
        self._holder = None
        super().release()


#: How often :func:`on_loop` looks whether the loop it waits for still runs (seconds).
_LOOK_AGAIN = 0.1

#: Tasks that must not be garbage-collected while they run.
_running: set[asyncio.Task[Any]] = set()


if sys.version_info >= (3, 11):

    async def within(awaitable: Awaitable[_T], timeout: float) -> _T:
        """``await awaitable``, raising :class:`TimeoutError` after ``timeout`` seconds.

        Not ``asyncio.wait_for``: on Python 3.11 a cancellation that comes as the
        awaitable ends is lost there (the caller goes on as if never cancelled)."""
        async with asyncio.timeout(timeout):
            return await awaitable

else:  # pragma: no cover - Python 3.10, where wait_for's flaw stays

    async def within(awaitable: Awaitable[_T], timeout: float) -> _T:
        """``await awaitable``, raising :class:`TimeoutError` after ``timeout`` seconds."""
        return await asyncio.wait_for(awaitable, timeout)


if sys.version_info >= (3, 11):

    def _cancel_requests(task: asyncio.Task[Any]) -> int:
        return task.cancelling()

else:  # pragma: no cover - Python 3.10: no count of cancel requests to tell by

    def _cancel_requests(task: asyncio.Task[Any]) -> int:
        return 0


class CancelCount:
    """The current task's cancel requests when made; :meth:`raise_lost` raises
    :class:`asyncio.CancelledError` if more came since and none was raised: a callee
    lost it (see :func:`keep_cancellation`). For a caller that must first put what it
    took where its failure path gives it back. (Python 3.10 counts none.)"""

    __slots__ = ("_before", "_task")

    def __init__(self) -> None:
        self._task = asyncio.current_task()
        self._before = 0 if self._task is None else _cancel_requests(self._task)

    def raise_lost(self) -> None:
        """Raise the cancellation a callee lost since this count was made, if any."""
        if self._task is not None and _cancel_requests(self._task) > self._before:
            raise asyncio.CancelledError


async def keep_cancellation(awaitable: Awaitable[_T]) -> _T:
    """``await awaitable``, and raise :class:`asyncio.CancelledError` if this task was
    cancelled meanwhile and the awaitable returned all the same: a callee lost the
    cancellation (``asyncio.wait_for`` on Python 3.11 does, when it meets a result, and
    redis-py sends every command through it under a socket timeout), and the task
    would go on as if never cancelled. A cancellation a callee took back (as
    ``asyncio.timeout`` does with its own) is not raised. Only for a result that holds
    nothing to give back."""
    count = CancelCount()
    result = await awaitable
    count.raise_lost()
    return result


class Event(asyncio.Event):
    """An :class:`asyncio.Event` whose ``wait`` takes a timeout, like a thread's."""

    async def wait(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Wait until set or for ``timeout`` seconds; whether it is set."""
        if timeout is None:
            return await super().wait()
        with contextlib.suppress(asyncio.TimeoutError):
            await within(super().wait(), timeout)
        return self.is_set()


async def acquire(lock: asyncio.Lock, timeout: float) -> bool:
    """Take ``lock``, waiting at most ``timeout`` seconds (0: only if it is free);
    whether it was taken. The caller releases it."""
    if not lock.locked() and not _queued(lock):
        await lock.acquire()  # free: taken at once, without suspending
        return True
    if timeout <= 0:
        return False
    try:
        await within(lock.acquire(), timeout)
    except asyncio.TimeoutError:
        return False
    return True


def _queued(lock: asyncio.Lock) -> bool:
    """Whether a task waits for ``lock``: just after a release that woke one, the lock
    is not ``locked()``, yet ``acquire()`` would queue behind that task (and wait out
    its whole hold). asyncio has no public way to tell: its Lock keeps the futures of
    the waiting tasks in ``_waiters`` (None or a deque; a cancelled one waits no more),
    as it has since Python 3.10. Without it, no task is taken to wait."""
    waiters = getattr(lock, "_waiters", None)
    return waiters is not None and any(not waiter.cancelled() for waiter in waiters)


class Waiter:
    """A one-shot wake-up that any thread may trigger, awaited by one consumer."""

    __slots__ = ("_future", "_loop")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._future: asyncio.Future[None] = self._loop.create_future()

    def wake(self) -> None:
        """Wake the waiter (from any thread; safe to call more than once)."""
        with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits
            self._loop.call_soon_threadsafe(self._set)

    def _set(self) -> None:
        if not self._future.done():
            self._future.set_result(None)

    async def wait(self, timeout: float) -> bool:
        """Wait until woken or for ``timeout`` seconds; whether it was woken."""
        done, _ = await asyncio.wait((self._future,), timeout=timeout)
        return bool(done)


class Background:
    """Work running beside the caller (an asyncio task), from :func:`spawn`."""

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self._task = task

    @property
    def current(self) -> bool:
        """Whether the caller is this work itself."""
        return self._task is asyncio.current_task()

    @property
    def done(self) -> bool:
        """Whether the work has ended."""
        return self._task.done()

    async def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the work to end; cancel it after that."""
        if self.current or self._task.done():
            return
        done, _ = await asyncio.wait((self._task,), timeout=timeout)
        if not done:
            self._task.cancel()


def spawn(work: Callable[[], Coroutine[Any, Any, object]], name: str) -> Background:
    """Run ``await work()`` as a task called ``name``, on the running loop."""
    task = asyncio.get_running_loop().create_task(work(), name=name)
    _running.add(task)
    task.add_done_callback(_running.discard)
    return Background(task)


async def fetch_shielded(
    fetch: Callable[[], Awaitable[_T]],
    hand_back: Callable[[_T], Awaitable[None]],
    orphans: set[Any],
) -> _T:
    """``await fetch()``, carried to its end even when the caller is cancelled.

    A fetch cut off half-way may already have leased messages on the server whose
    reply would then be lost: those would sit, unseen, for a visibility timeout. So
    the fetch runs on, shielded, and when the caller was cancelled its result goes to
    ``hand_back`` (which returns the deliveries at once); the task doing that is kept
    in ``orphans`` until it ends, so that a close can wait for it
    (:func:`settle_orphans`).
    """
    task = asyncio.ensure_future(fetch())
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        orphan = asyncio.ensure_future(_hand_back_when_done(task, hand_back))
        orphans.add(orphan)
        orphan.add_done_callback(orphans.discard)
        raise


async def shielded(work: Callable[[], Awaitable[_T]], running: set[Any]) -> _T:
    """``await work()``, carried to its end even when the caller is cancelled: the
    cancellation is raised at once, and the work's task is kept in ``running`` until
    it ends (a subscription's and a broker's close run this way)."""
    task = asyncio.ensure_future(work())
    running.add(task)
    task.add_done_callback(running.discard)
    return await asyncio.shield(task)


def home_loop() -> asyncio.AbstractEventLoop | None:
    """The running event loop (None outside one): where what is made now belongs."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def on_loop(
    loop: asyncio.AbstractEventLoop | None,
    work: Callable[[], Coroutine[Any, Any, object]],
    timeout: float,
) -> bool:
    """``await work()`` on ``loop``, and wait for it here ``timeout`` seconds at most;
    whether it ended (its exception, if any, is raised here).

    asyncio's locks and events belong to one loop: an object made on a loop that
    another thread runs (a subscription, in a broker shared between threads) must be
    worked on there. Here when ``loop`` is this one, or None, or not running (closed,
    or never run again: nothing waits on it any more). If ``loop`` stops running
    before the work ends, or the timeout passes, this stops waiting: False.
    """
    here = asyncio.get_running_loop()
    if loop is None or loop is here or not loop.is_running():
        await work()
        return True
    coroutine = work()
    try:
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
    except RuntimeError:  # the loop closed since: nothing runs there any more
        coroutine.close()
        await work()
        return True
    waiting = asyncio.wrap_future(future)
    deadline = time.monotonic() + timeout
    while not waiting.done():
        left = deadline - time.monotonic()
        if left <= 0 or not loop.is_running():
            waiting.cancel()
            return False
        # Bounded, to notice a loop that stopped without running the work.
        await asyncio.wait((waiting,), timeout=min(left, _LOOK_AGAIN))
    if waiting.cancelled():  # cancelled there: its loop is shutting down
        return False
    waiting.result()
    return True


async def settle_orphans(orphans: set[Any], timeout: float) -> None:
    """Wait (``timeout`` seconds at most) for the fetches that cancelled receives left
    running, and for their hand-backs."""
    if orphans:
        await asyncio.wait(list(orphans), timeout=timeout)


async def _hand_back_when_done(
    task: asyncio.Future[_T], hand_back: Callable[[_T], Awaitable[None]]
) -> None:
    try:
        fetched = await task
    except BaseException:  # the fetch failed: it leased nothing it could report
        return
    try:
        await hand_back(fetched)
    except Exception as exc:
        log.warning(
            "could not hand back deliveries of a cancelled receive: %s",
            exc,
            extra=delivery_fields(fetched if isinstance(fetched, list) else ()),
        )


async def checkpoint() -> None:
    """Let the other tasks run (a consumer that always finds work must not starve them)."""
    await asyncio.sleep(0)


class HandlerCalls:
    """How a worker calls its handlers: coroutine functions are awaited on the loop,
    plain functions run in a pool of ``threads`` daemon threads of their own (so that a
    blocking handler does not stop the loop, and ``threads`` sync handlers really run
    at once; asyncio's default pool is smaller). Daemon threads, as the sync worker's
    slots are: a handler thread that a stop left running does not keep the program
    from exiting once the run has returned (a ``ThreadPoolExecutor``'s threads are
    joined at exit, so the process never ended while such a handler hung)."""

    #: What a handler raises that stops the program, not the handler: Ctrl-C and
    #: ``sys.exit()`` land on the event loop's thread, in whatever coroutine runs.
    program_stops: tuple[type[BaseException], ...] = (KeyboardInterrupt, SystemExit)

    #: Whether handlers may be coroutine functions.
    takes_coroutines = True

    def __init__(self, threads: int) -> None:
        self._size = threads
        self._work: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._started = 0
        self._closed = False
        self._guard = threading.Lock()

    async def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function(*args)`` to its end and return its result."""
        if not self._size or is_async_callable(function):
            result = function(*args)
        else:
            result = await self._in_thread(function, args)
        return await result if inspect.isawaitable(result) else result

    async def _in_thread(self, function: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def job() -> None:
            if future.cancelled():  # its caller is gone: never started
                return
            try:
                outcome: tuple[str, Any] = ("set_result", function(*args))
            except StopIteration as exc:
                # A future cannot hold one (asyncio refuses it, and the caller waited for
                # ever): a RuntimeError from it, as a coroutine's StopIteration becomes.
                try:
                    text = f": {exc}" if str(exc) else ""
                except Exception:
                    text = ""
                error = RuntimeError(f"the handler raised StopIteration{text}")
                error.__cause__ = exc
                outcome = ("set_exception", error)
            except BaseException as exc:
                outcome = ("set_exception", exc)
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_resolve, future, *outcome)

        with self._guard:
            if self._closed:  # as a ThreadPoolExecutor shut down refuses
                raise RuntimeError("the worker's handler threads are closed")
            if self._started < self._size:  # one thread a slot, started when first needed
                self._started += 1
                name = f"brokerkit-handler_{self._started - 1}"
                threading.Thread(target=self._serve, name=name, daemon=True).start()
        self._work.put(job)
        return await future

    def _serve(self) -> None:
        while (job := self._work.get()) is not None:
            job()

    def close(self) -> None:
        """Let the pool's threads end once their handlers return (not waiting for them)."""
        with self._guard:
            self._closed = True
            started = self._started
        for _ in range(started):
            self._work.put(None)


def _resolve(future: asyncio.Future[Any], how: str, value: Any) -> None:
    """Give ``future`` its outcome (on its loop), unless it was cancelled meanwhile."""
    if not future.done():
        getattr(future, how)(value)


def on_signals(signals: tuple[int, ...], callback: Callable[[int], None]) -> Callable[[], None]:
    """Call ``callback(signal number)`` on each of ``signals``, on the loop; return the
    function that restores the previous handling: the Python handler each signal had,
    or the handler the running loop had for it (``loop.add_signal_handler``).
    Outside the main thread (where a program cannot take signals) this does nothing;
    nor for a signal the loop handles where its handler cannot be read back (uvloop
    keeps it out of reach): that one stays the program's."""
    loop = asyncio.get_running_loop()
    # asyncio has no public way to read a loop's signal handler: its unix loops keep
    # them in _signal_handlers (a Handle per signal), as they have since 3.4.
    loop_handlers: dict[int, asyncio.Handle] | None = getattr(loop, "_signal_handlers", None)
    previous: dict[int, tuple[Any, asyncio.Handle | None]] = {}
    for number in signals:
        before = signal.getsignal(number)
        if loop_handlers is None and getattr(before, "__self__", None) is loop:
            # The loop handles it, and keeps its handler out of reach (uvloop): taken
            # here, it could never be given back. Left to the program, whose it is.
            continue
        handle = None if loop_handlers is None else loop_handlers.get(number)
        try:
            loop.add_signal_handler(number, callback, number)
        except (RuntimeError, ValueError, NotImplementedError):
            continue
        previous[number] = (before, handle)

    def restore() -> None:
        for number, (before, handle) in previous.items():
            loop.remove_signal_handler(number)  # Python's default handling, for now
            if handle is not None and not handle.cancelled():
                handler = handle._callback  # type: ignore[attr-defined]
                loop.add_signal_handler(number, handler, *handle._args)
            elif before is not None:  # None: a handler not set from Python, unknowable
                signal.signal(number, before)

    return restore
