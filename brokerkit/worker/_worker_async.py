"""The worker: decorated handlers, run until a signal, stopped by draining."""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from brokerkit._acompat import Event, HandlerCalls, Waiter, on_signals, spawn
from brokerkit._broker_async import DEFAULT_GROUP, AsyncBroker
from brokerkit._capabilities import Capability
from brokerkit._error_text import value_text
from brokerkit._logging import log_fields
from brokerkit.exceptions import ConfigurationError, InvalidOption
from brokerkit.worker._drain_async import TICK, drain
from brokerkit.worker._handler import HandlerSpec, check_options, make_spec
from brokerkit.worker._retry import RetryPolicy
from brokerkit.worker._runner_async import AsyncRunner
from brokerkit.worker._stats import HandlerStats, StatsSnapshot

__all__ = ["DEFAULT_GRACE", "AsyncWorker"]

log = logging.getLogger("brokerkit.worker")

_F = TypeVar("_F", bound=Callable[..., Any])

#: Seconds that handlers in progress get to finish after a stop.
DEFAULT_GRACE = 30.0
#: :meth:`AsyncWorker.wait_ready` without a timeout, and the end of
#: :meth:`AsyncWorker.running` (whose grace may be infinite), wait in steps of this many
#: seconds.
_READY_WAIT = 3600.0


class AsyncWorker:
    """Runs decorated handlers: each returns to ack, raises to nack under its retry
    policy, or settles its delivery itself.

    >>> worker = AsyncWorker(broker)                               # doctest: +SKIP
    >>> @worker.handler("order.created", group="email", concurrency=8)
    ... async def send_receipt(order: dict) -> None: ...

    :meth:`run` runs every handler until SIGTERM or SIGINT (or :meth:`stop`), then
    drains: it fetches no more, hands back the deliveries waiting for a slot, lets the
    handlers in progress finish for up to ``grace`` seconds, and returns. A second
    signal (or ``stop(now=True)``) ends the wait at once: where a handler is an asyncio
    task it is cancelled and its delivery nacked, an attempt counted (so a handler
    that always hangs still reaches ``max_deliveries``); a handler thread cannot be
    stopped, and its delivery stays leased, coming back after the visibility timeout.

    :param broker: the broker to read from; it may be left out and given later
        (:attr:`broker`, or the ``brokerkit worker`` command's URL).
    :param grace: seconds handlers in progress get to finish after a stop.
    :ivar stopped_by: the signal number that stopped the last run (None: :meth:`stop`).
    :ivar drained: whether the last run ended with every handler finished in time (False
        for a run that could not start: it raised what stopped it).
    """

    def __init__(self, broker: AsyncBroker | None = None, *, grace: float = DEFAULT_GRACE) -> None:
        if broker is not None and not isinstance(broker, AsyncBroker):
            raise InvalidOption(
                f"a worker takes a broker (from connect(url)), got {type(broker).__name__}"
            )
        self.broker = broker
        self.grace = _seconds("grace", grace, valid="a non-negative number of seconds")
        self.stopped_by: int | None = None
        self.drained = False
        # whether its last run subscribed every handler, and how many of them (in
        # order) it subscribed: `brokerkit worker` reads both
        self._started = False
        self._subscribed = 0
        self._specs: list[HandlerSpec] = []
        self._stats: dict[str, HandlerStats] = {}
        # Whether run has subscribed every handler, and the wake-ups of those waiting
        # for that (each made by its wait_ready, on its own loop in the asyncio worker:
        # a worker may run in one event loop after another); under _guard.
        self._ready = False
        self._ready_waiters: set[Waiter] = set()
        # Wake-ups of the running :meth:`run` (made by it, on its loop in the asyncio
        # worker), which :meth:`stop` may trigger from any thread; run looks at the
        # flags below every TICK as well, so a stop that finds none is not lost.
        self._stop: Waiter | None = None
        self._cut_short: Waiter | None = None
        self._stopped = self._abort = False
        self._signals: list[int] = []
        self._running = False
        self._guard = threading.Lock()

    # -- registering ----------------------------------------------------------------

    def handler(
        self,
        topic: str,
        *,
        group: str | None = None,
        concurrency: int = 1,
        prefetch: int | None = None,
        retry: RetryPolicy | None = None,
        name: str | None = None,
    ) -> Callable[[_F], _F]:
        """Register the decorated function as the handler of ``topic``.

        The function takes the body (decoded; validated into its annotated type when
        that is a pydantic model, a msgspec Struct or a dataclass) and/or the delivery
        (a parameter annotated ``Delivery`` or named ``delivery``). It returns to ack,
        raises to fail (see ``retry``), or acks or nacks the delivery itself. A body
        that does not decode or validate is dead-lettered at once, never retried.

        :param group: the consumer group; give each handler of one topic its own to
            have each see every message (default: the broker's shared group).
        :param concurrency: at most this many calls run at once.
        :param prefetch: at most this many deliveries wait, leased (their leases
            renewed), for a free slot (default: ``concurrency``; 0: fetch one only
            when a slot is free).
        :param retry: what happens to a delivery whose handler raised (default:
            :class:`~brokerkit.worker.Immediate`, handed back at once); after its
            ``max_attempts`` (or the broker's ``max_deliveries``, the smaller) it is
            dead-lettered with the error as the reason.
        :param name: the name shown in stats and logs (default: the function's).
        :raises InvalidOption: a bad parameter or signature, a second handler for
            the same topic and group, or the worker is running. The parameters are
            checked when this is called, before the function is given: a decorator left
            bare (``@worker.handler`` without its topic) raises at once rather than
            register nothing.
        :raises Unsupported: the broker (if already given) cannot do what the handler
            needs, such as a retry delay without DELAY, or more than one attempt
            without ACK (a backend that never redelivers).
        """
        check_options(
            topic, group=group, concurrency=concurrency, prefetch=prefetch, retry=retry, name=name
        )

        def register(function: _F) -> _F:
            spec = make_spec(
                function,
                topic,
                group=group,
                concurrency=concurrency,
                prefetch=prefetch,
                retry=retry,
                name=name,
                takes_coroutines=HandlerCalls.takes_coroutines,
            )
            competing = self.broker is None or Capability.COMPETING in self.broker.capabilities
            # Compared as the broker reads them: no group is the broker's DEFAULT_GROUP,
            # so group=None and group="default" share its messages.
            reads = (spec.topic, spec.group or DEFAULT_GROUP)
            for other in self._specs:
                if competing and (other.topic, other.group or DEFAULT_GROUP) == reads:
                    raise InvalidOption(
                        f"handlers {other.name} and {spec.name} both read {spec.topic!r} in "
                        f"group {reads[1]!r}; give one its own group"
                    )
                if other.name == spec.name:
                    raise InvalidOption(f"two handlers are named {spec.name!r}; pass name=")
            if self.broker is not None:
                spec.check(self.broker)
            self._refuse_while_running(f"register handler {spec.name}")
            self._specs.append(spec)
            self._stats[spec.name] = HandlerStats(spec.topic, spec.name)
            return function

        return register

    @property
    def handlers(self) -> list[HandlerSpec]:
        """The registered handlers, in order."""
        return list(self._specs)

    def set_concurrency(self, concurrency: int) -> None:
        """Give every handler ``concurrency`` slots (what ``--concurrency`` does).

        :raises InvalidOption: a bad ``concurrency``, or the worker is running."""
        specs = [spec.with_concurrency(concurrency) for spec in self._specs]
        self._refuse_while_running("change the concurrency")
        self._specs = specs

    def _refuse_while_running(self, what: str) -> None:
        """Raise if a run is going: it started with the handlers it had, and would never
        see the change (a handler registered now would never be called).

        :raises InvalidOption: it is."""
        if self._running:
            raise InvalidOption(
                f"cannot {what} while the worker is running: a run serves the handlers it "
                "started with, and would never see it. Register handlers (and set the "
                "concurrency) before run() or running()"
            )

    # -- running --------------------------------------------------------------------

    async def run(self) -> None:
        """Run every handler until SIGTERM/SIGINT or :meth:`stop`, then drain and return.
        A broker closed while it runs ends the run too (logged as a warning): nothing
        could be received any more.

        Signals are taken only when this runs in the main thread; elsewhere, stop it
        with :meth:`stop`.

        :raises ConfigurationError: no broker, or no handler.
        :raises Unsupported: the broker cannot do what a handler needs.
        """
        await self._serve(take_signals=True)

    async def _serve(self, *, take_signals: bool, claim: _Claim | None = None) -> None:
        """:meth:`run`, taking SIGINT and SIGTERM (in the main thread) or not; ``claim``
        follows this run for the :meth:`running` block that started it."""
        with self._guard:
            if not self._running:  # a run going on keeps its own; else none is left
                self._reset_counts()
        broker = self.broker
        if broker is None:
            raise ConfigurationError(
                "the worker has no broker: pass one to Worker(broker), or a URL to "
                "`brokerkit worker`"
            )
        if not self._specs:
            raise ConfigurationError(
                "the worker has no handlers: register one with @worker.handler"
            )
        for spec in self._specs:
            spec.check(broker)
        with self._guard:
            if self._running:
                raise ConfigurationError("the worker is already running; run it once at a time")
            self._running = True
            # whatever ran while this one checked its handlers left its own
            self._reset_counts()
            if claim is not None:
                claim.began = True
                self._stopped = self._stopped or claim.stop_asked
        try:
            await self._run(broker, take_signals)
        finally:
            with self._guard:
                # consumed by this run; a stop made before it started was kept for it
                self._stopped = self._abort = False
                self._running = False
                if claim is not None:
                    claim.ended = True

    def _reset_counts(self) -> None:
        """Forget what the last run said of its start and drain; under ``_guard``."""
        self.drained = self._started = False
        self._subscribed = 0

    async def _run(self, broker: AsyncBroker, take_signals: bool) -> None:
        self.stopped_by = None
        self._signals.clear()
        self._stop, self._cut_short = stop, cut_short = Waiter(), Waiter()
        threads = sum(spec.concurrency for spec in self._specs if not spec.is_coroutine)
        calls = HandlerCalls(threads)
        restore = (
            on_signals((signal.SIGINT, signal.SIGTERM), self._signals.append)
            if take_signals
            else _nothing_to_restore
        )
        runners: list[AsyncRunner] = []
        started = False
        try:
            try:
                for spec in self._specs:
                    runner = AsyncRunner(broker, spec, calls, self._stats[spec.name])
                    runners.append(runner)
                    try:
                        await runner.start()
                    finally:  # a start that failed after it subscribed left one live
                        self._subscribed += runner.subscribed
                self._set_ready(True)
                started = self._started = True
                log.info(
                    "worker running %d handler(s) on %s",
                    len(runners),
                    broker.url,
                    extra=log_fields(),
                )
                while not self._stopping():
                    if broker.closed:
                        # Its slots have ended (each receive raised BrokerClosed): a run
                        # that went on would handle nothing, for ever, and say nothing.
                        log.warning(
                            "worker stopping: its broker %s was closed while it ran",
                            broker.url,
                            extra=log_fields(),
                        )
                        break
                    await stop.wait(TICK)
            finally:
                await self._drain(runners, cut_short, started=started)
        finally:
            self._set_ready(False)
            restore()
            calls.close()

    @asynccontextmanager
    async def running(self, timeout: float | None = 30.0) -> AsyncIterator[AsyncWorker]:
        """Run the worker in the background (an asyncio task; a thread for the sync
        worker) while the ``async with`` block runs; on leaving it, stop, drain and wait.

        It takes no signals: SIGINT and SIGTERM stay the program's to handle (leaving
        the block stops the worker).

        Handlers are subscribed when the block starts, so nothing published inside it
        is missed on a backend without PERSISTENT.

        :param timeout: the longest to wait for the worker to start, and, beyond its
            ``grace``, to end: seconds, 0 or more (None: no limit).
        :raises InvalidOption: ``timeout`` is not such a number (checked before the
            worker starts).
        :raises BrokerError: the worker could not start (what :meth:`run` raised).
        """
        timeout = _seconds("running(timeout=...)", timeout, valid=_TIMEOUT, none=True)
        errors: list[BaseException] = []
        ended = Event()
        claim = _Claim()

        async def work() -> None:
            try:
                await self._serve(take_signals=False, claim=claim)
            except BaseException as exc:
                errors.append(exc)
            finally:
                ended.set()

        background = spawn(work, "brokerkit-worker")
        deadline = time.monotonic() + timeout
        while not self._ready and not ended.is_set() and time.monotonic() < deadline:
            await ended.wait(TICK)
        if errors:
            raise errors[0]
        try:
            yield self
        finally:
            self._stop_own_run(claim)
            # In steps: grace may be infinite, or longer than a thread's wait takes
            # (threading.TIMEOUT_MAX, some 292 years).
            deadline = time.monotonic() + self.grace + timeout
            while not ended.is_set() and (left := deadline - time.monotonic()) > 0:
                await ended.wait(min(left, _READY_WAIT))
            await background.join(1.0)
        if errors:
            raise errors[0]

    def stop(self, *, now: bool = False) -> None:
        """Ask :meth:`run` to drain and return (from any thread or task, a handler
        included; calling it again changes nothing). ``now=True`` ends the drain at
        once, as a second signal does. A stop made while no run is going is kept for
        the next one, which drains as soon as it has started: so ``stop()`` right after
        ``asyncio.create_task(worker.run())`` (or a thread's ``start()``) is not lost
        because the run had not begun yet."""
        self._stopped = True
        if now:
            self._abort = True
        self._wake(now=now)

    def _stop_own_run(self, claim: _Claim) -> None:
        """Stop the run of a :meth:`running` block, if it is still going (or has yet to
        begin), and no other: once that run has ended (a handler called :meth:`stop`,
        or it raised), a stop would be kept for the worker's next run, which would then
        drain at once."""
        with self._guard:
            if claim.ended:
                return
            if not claim.began:
                claim.stop_asked = True
                return
            self._stopped = True
        self._wake(now=False)

    def _wake(self, *, now: bool) -> None:
        """Have the run (if any) look at its stop flags now rather than at its next
        tick."""
        stop, cut_short = self._stop, self._cut_short
        if now and cut_short is not None:
            cut_short.wake()
        if stop is not None:
            stop.wake()

    async def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until :meth:`run` has subscribed every handler; whether it has.

        :param timeout: seconds, 0 or more (None: no limit).
        :raises InvalidOption: ``timeout`` is not such a number."""
        if timeout is not None:
            timeout = _seconds("wait_ready(timeout=...)", timeout, valid=_TIMEOUT)
        waiter = Waiter()
        with self._guard:
            if self._ready:
                return True
            self._ready_waiters.add(waiter)
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._ready:
                left = _READY_WAIT if deadline is None else deadline - time.monotonic()
                if left <= 0 or await waiter.wait(min(left, _READY_WAIT)):
                    break
        finally:
            with self._guard:
                self._ready_waiters.discard(waiter)
        return self._ready

    def _set_ready(self, ready: bool) -> None:
        with self._guard:
            self._ready = ready
            waiters = list(self._ready_waiters) if ready else []
        for waiter in waiters:
            waiter.wake()

    def stats(self) -> list[StatsSnapshot]:
        """The counters of every handler, now."""
        return [stats.snapshot() for stats in self._stats.values()]

    # -- stopping -------------------------------------------------------------------

    def _stopping(self) -> bool:
        if self._signals and self.stopped_by is None:
            self.stopped_by = self._signals[0]
            log.info("worker got signal %d: draining", self.stopped_by, extra=log_fields())
        return bool(self._signals) or self._stopped

    def _aborting(self) -> bool:
        return self._abort or len(self._signals) >= 2

    async def _drain(self, runners: list[AsyncRunner], cut_short: Waiter, *, started: bool) -> None:
        """Stop and close ``runners`` (see :func:`drain`); ``started``: whether every
        handler subscribed (else the run raises what stopped it, and this says nothing
        of a drain: :attr:`drained` stays False)."""

        def verdict(drained: bool) -> None:
            # set as soon as the drain knows it, before it waits for the slots
            self.drained = started and drained

        drained = await drain(
            runners, cut_short, grace=self.grace, aborting=self._aborting, verdict=verdict
        )
        if not started:  # it never ran: what stopped it is raised
            return
        log.info(
            "worker stopped (%s)",
            "drained" if drained else "handlers cut short",
            extra=log_fields(),
        )


#: What ``running()`` and ``wait_ready()`` take as their timeout.
_TIMEOUT = "a number of seconds, 0 or more, or None (no limit)"


def _seconds(name: str, value: object, *, valid: str, none: bool = False) -> float:
    """``value`` as seconds, 0 or more (infinity included; None too, as infinity, if
    ``none``).

    :raises InvalidOption: not such a number (a bool, a str, NaN, negative), saying
        that ``name`` must be ``valid``."""
    if value is None and none:
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise InvalidOption(f"{name} must be {valid}, got {value_text(value)}")
    try:
        return float(value)
    except OverflowError:  # an int too large for a float: longer than any wait
        return math.inf


class _Claim:
    """The run a :meth:`AsyncWorker.running` block started, as that block sees it;
    read and written under the worker's ``_guard``."""

    __slots__ = ("began", "ended", "stop_asked")

    def __init__(self) -> None:
        #: the run is going (it got past "already running"), or has gone
        self.began = False
        #: the run has ended, its stop flags cleared
        self.ended = False
        #: the block ended before the run began: the run drains as soon as it begins
        self.stop_asked = False


def _nothing_to_restore() -> None:
    """What a run that took no signals restores."""
