"""One handler at work: a subscription, ``concurrency`` slots that take deliveries
from it and run the handler, and the renewal of the leases of deliveries that wait.

Each slot receives from the handler's one subscription, which fetches (and leases)
``prefetch + 1`` messages at a time, and only when it holds none: the slot keeps one,
so at most ``prefetch`` wait for a slot, and they wait in the subscription, which
hands them back when it is closed. A slot asks for a message only when it is free,
so at most ``concurrency`` handlers run.

What becomes of a delivery once its handler is done with it (acked, retried under
the policy, dead-lettered, handed back or let go) is the :class:`AsyncSettler`'s.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from brokerkit._acompat import Background, CancelCount, Event, HandlerCalls, sleep, spawn
from brokerkit._broker_async import AsyncBroker
from brokerkit._capabilities import Capability
from brokerkit._compat import is_async_callable
from brokerkit._delivery_async import AsyncDelivery
from brokerkit._hooks import RELAY
from brokerkit._logging import delivery_fields, log_fields
from brokerkit._subscription_async import AsyncSubscription
from brokerkit.exceptions import AlreadySettled, BrokerClosed, BrokerError, StaleDelivery
from brokerkit.worker._call import HandlerCall, NotStarted
from brokerkit.worker._error_text import error_text
from brokerkit.worker._handler import HandlerSpec
from brokerkit.worker._settle_async import AsyncSettler
from brokerkit.worker._stats import HandlerStats
from brokerkit.worker._tracebacks import log_error
from brokerkit.worker._typed import InvalidBody

__all__ = ["POLL", "AsyncRunner"]

log = logging.getLogger("brokerkit.worker")

#: How long a free slot waits for a message before it looks at the stop flag again.
POLL = 0.25
#: The longest a slot pauses after receiving failed, before it tries again.
MAX_PAUSE = 5.0
#: The most times a slot's pause doubles: past MAX_PAUSE whatever it is (a count of
#: failures left to grow made ``POLL * 2**failures`` overflow in a long outage).
_MOST_DOUBLINGS = 64


class AsyncRunner:
    """Runs one :class:`HandlerSpec` on one broker until :meth:`stop_fetching`."""

    def __init__(
        self, broker: AsyncBroker, spec: HandlerSpec, calls: HandlerCalls, stats: HandlerStats
    ) -> None:
        self.broker = broker
        self.spec = spec
        self.stats = stats
        self._calls = calls
        self._draining = Event()
        self._finished = Event()
        self._subscription: AsyncSubscription | None = None
        self._slots: list[Background] = []
        self._renewer: Background | None = None
        # The deliveries being handled, each with its call, and those whose handler
        # thread an abandon left running (kept until the thread ends, so that their
        # leases are renewed meanwhile); a plain lock (never held across I/O), since
        # the slots are threads in the sync worker and the renewal reads the map.
        self._active: dict[AsyncDelivery, HandlerCall] = {}
        self._active_lock = threading.Lock()
        # The slots that took a delivery to handle: counted (under _active_lock) before
        # they look at _draining, so that a drain that set it and then counts none
        # knows that no handler runs nor will start.
        self._handling = 0
        self._abandoned = False
        # The deliveries whose leases the renewal found run out (the process stalled
        # past the visibility timeout): told once, never renewed again; forgotten once
        # settled. Under _active_lock.
        self._lost: set[AsyncDelivery] = set()
        self._limit = spec.retry.limit(broker.options.max_deliveries)
        self._settler = AsyncSettler(broker, spec, stats, self._limit)

    async def start(self) -> None:
        """Subscribe and start the slots (and the lease renewal)."""
        spec = self.spec
        self._subscription = subscription = await self.broker.subscribe(
            spec.topic, group=spec.group, prefetch=spec.prefetch + 1
        )
        self.stats.count_waiting(lambda: subscription.buffered)
        for number in range(spec.concurrency):
            name = f"brokerkit-worker {spec.name} #{number + 1}"
            self._slots.append(spawn(self._slot, name))
        if Capability.ACK in self.broker.capabilities:
            self._renewer = spawn(self._renew, f"brokerkit-worker {spec.name} leases")

    @property
    def subscribed(self) -> bool:
        """Whether :meth:`start` subscribed (even if it failed after: the subscription
        lives, and its slots may be handling messages, until :meth:`close`)."""
        return self._subscription is not None

    @property
    def busy(self) -> bool:
        """Whether a handler is running (or about to start: it will not once
        :meth:`stop_fetching` was called). A slot that is only ending its receive is
        not busy: see :meth:`join`."""
        with self._active_lock:
            return self._handling > 0

    @property
    def ended(self) -> bool:
        """Whether every slot has ended."""
        return all(slot.done for slot in self._slots)

    async def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the slots to end, once no handler is
        :attr:`busy`: each is then ending its receive (a subscription's close ends it),
        and hands back what that brought. Where a slot is a task, one still running
        after ``timeout`` is cancelled (its receive hands back what it brings)."""
        deadline = time.monotonic() + timeout
        for slot in self._slots:
            if not slot.done:
                await slot.join(max(deadline - time.monotonic(), 0.0))

    def stop_fetching(self) -> None:
        """Fetch no more: a slot takes no new delivery from now on (one it receives is
        handed back). Handlers in progress go on. Set on every runner of a worker
        before any :meth:`close`, which waits for a fetch in progress."""
        self._draining.set()

    async def close(self) -> None:
        """Stop fetching (if not yet) and hand back the deliveries waiting for a slot.
        Never raises: an error is logged (the worker closes its runners side by side)."""
        self._draining.set()
        if self._subscription is None:
            return
        try:
            await self._subscription.close()
        except Exception as exc:
            log.error(
                "handler %s: closing its subscription failed: %s",
                *(self.spec.name, error_text(exc)),
                exc_info=exc,
                extra=log_fields(self.spec.topic, self.spec.group),
            )
        finally:  # what waited was handed back: nothing waits for a slot any more
            self.stats.count_waiting(None)

    async def abandon(self) -> None:
        """Stop at once. Where the slot is a task it is cancelled: a coroutine handler
        still running is nacked (an attempt counted), a delivery not yet given to its
        handler is handed back, and one whose handler thread still runs keeps its
        lease (see :meth:`AsyncSettler.cut_short`). A slot thread cannot be stopped: a
        handler it runs keeps its lease while it runs, and its result is then dropped
        (its delivery comes back after the visibility timeout); one it has not started
        yet is never started, and its delivery is handed back."""
        with self._active_lock:
            self._abandoned = True
            for call in self._active.values():
                call.abandon()
        for slot in self._slots:
            await slot.join(0)
        deadline = time.monotonic() + 1.0
        for slot in self._slots:  # let cancelled tasks hand their deliveries back
            if not slot.done:
                await slot.join(max(deadline - time.monotonic(), 0.0))

    async def finish(self) -> None:
        """Stop renewing leases (after the drain, or after :meth:`abandon`), except
        those of deliveries whose handler thread still runs: renewed until each thread
        ends or the broker closes, so that no other consumer gets them meanwhile."""
        self._finished.set()
        if self._renewer is not None and not self._held():
            await self._renewer.join(1.0)

    def _held(self) -> list[AsyncDelivery]:
        """The unsettled deliveries being handled (forgetting those settled)."""
        with self._active_lock:
            for delivery in [d for d in self._active if d.settled]:
                del self._active[delivery]
            self._lost = {d for d in self._lost if not d.settled}
            return list(self._active)

    # -- the slots ----------------------------------------------------------------

    async def _slot(self) -> None:
        """A slot that never ends before the drain: an error that escapes its loop
        (a bug, not a broker error) is logged with its traceback and the slot starts
        over, so the worker never runs on with fewer slots than it reports. (Whatever
        a handler raises is its failure, handled in :meth:`_run`: it never gets here.)"""
        while True:
            try:
                await self._take()
                return
            except Exception as exc:
                log_error(
                    log,
                    logging.ERROR,
                    "handler %s: a slot failed and starts over: %s",
                    *(self.spec.name, error_text(exc)),
                    error=exc,
                    extra=log_fields(self.spec.topic, self.spec.group),
                )
                if await self._draining.wait(POLL):
                    return

    def _hard_stop(self, count: CancelCount) -> bool:
        """Whether the slot is being stopped under its handler: the worker abandoned
        its slots (a hard stop), or the slot's task was cancelled since ``count`` was
        made (by that hard stop, or by the end of its event loop). A thread is never
        cancelled; a BaseException a handler raises itself (``SystemExit``,
        ``KeyboardInterrupt``, ``GeneratorExit``, or the ``CancelledError`` of another
        task it awaited) is a failure of the handler, not a stop."""
        if self._abandoned:
            return True
        try:
            count.raise_lost()
        except BaseException:  # the CancelledError that says the task was cancelled
            return True
        return False

    async def _take(self) -> None:
        subscription = self._subscription
        assert subscription is not None
        failures = 0
        while not self._draining.is_set():
            try:
                delivery = await subscription.receive(timeout=POLL)
            except BrokerClosed:
                return
            except Exception as exc:  # a BrokerError (already retried) or a bug: back off
                # counted no further than the pause grows: POLL * 2**1024 is no float
                failures = min(failures + 1, _MOST_DOUBLINGS)
                pause = min(POLL * 2**failures, MAX_PAUSE)
                log.warning(
                    "handler %s: receiving from %r failed (again in %.3g s): %s",
                    *(self.spec.name, self.spec.topic, pause, error_text(exc)),
                    exc_info=None if isinstance(exc, BrokerError) else exc,
                    extra=log_fields(self.spec.topic, self.spec.group),
                )
                await self._draining.wait(pause)
                continue
            failures = 0
            if delivery is None:
                continue
            if self._lost_while_waiting(delivery):
                continue
            with self._active_lock:
                self._handling += 1
            if self._draining.is_set():
                with self._active_lock:  # no handler: the drain need not wait for it
                    self._handling -= 1
                await self._settler.hand_back(delivery)
                return
            try:
                await self._handle(delivery, subscription.buffered)
            finally:
                with self._active_lock:
                    self._handling -= 1

    async def _handle(self, delivery: AsyncDelivery, waiting: int) -> None:
        self.stats.started(waiting)
        call = HandlerCall(delivery)
        with self._active_lock:
            self._active[delivery] = call
            if self._abandoned:
                call.abandon()
        try:
            await self._run(delivery, call)
        except Exception as exc:
            # A bug (in the library, or a broker raising what it should not): the slot
            # logs it and starts over; the delivery is retried with an attempt counted,
            # never handed back uncounted, so that it cannot loop for ever.
            if not delivery.settled:
                await self._settler.broken(delivery, exc, call)
            raise
        except BaseException:
            # The slot was cancelled (the asyncio worker's hard stop), or interrupted
            # outside its handler (what the handler raises, _run has dealt with). A
            # delivery still settling is left to that settlement: a thread adapter's
            # ack goes on in its thread after its caller was cancelled.
            if delivery._settled is False:
                await self._settler.cut_short(delivery, call)
            raise
        finally:
            if not call.in_thread:  # else kept, its lease renewed, until the thread ends
                with self._active_lock:
                    self._active.pop(delivery, None)
            self.stats.finished()

    async def _run(self, delivery: AsyncDelivery, call: HandlerCall) -> None:
        spec = self.spec
        try:
            args = spec.binding.arguments(delivery)
        except InvalidBody as exc:
            # dead-lettered at once, where the backend has a dead-letter topic at all;
            # dropped (an uncounted nack) where it has none
            dead = Capability.DEAD_LETTER in self.broker.capabilities
            if RELAY.deliver:  # the body's error, on the delivery's span and histogram
                RELAY.handler_failed(delivery, exc)
            text = error_text(exc)
            log.warning(
                "handler %s: message %s has an invalid body%s: %s",
                spec.name,
                delivery.id,
                "" if dead else " (dropped: no dead-letter topic)",
                text,
                extra=delivery_fields([delivery]),
            )
            await self._settler.nack(
                delivery,
                "dead_lettered" if dead else "",
                requeue=False,
                reason=f"invalid body: {text}",
            )
            return
        count = CancelCount()
        function = spec.function
        if RELAY.deliver and (context := RELAY.handler_context(delivery)) is not None:
            function = _inside(context, function)
        try:
            await self._calls.call(call.wrap(function), *args)
        except NotStarted:  # abandoned before it started: never will
            await self._settler.hand_back(delivery)
            return
        except BaseException as exc:
            if call.dropped:
                self._settler.dropped(delivery, exc, call)
                return
            if not isinstance(exc, Exception) and (
                self._hard_stop(count)
                or (isinstance(exc, self._calls.program_stops) and is_async_callable(spec.function))
            ):
                # the worker's hard stop, or Ctrl-C or sys.exit() on the event loop's
                # thread (the program's, not the handler's): _handle settles the delivery
                raise
            # Whatever else the handler raised, GeneratorExit or a CancelledError not of
            # this slot included (and in a handler's thread SystemExit and
            # KeyboardInterrupt): a failure of the handler, and the slot goes on.
            if RELAY.deliver:  # the handler's error, on the delivery's span and histogram
                RELAY.handler_failed(delivery, exc)
            await self._settler.failed(delivery, exc, call)
            return
        if call.dropped:
            self._settler.dropped(delivery, None, call)
            return
        call.returned = True  # a hard stop that cuts its ack short acks it (cut_short)
        await self._settler.ack(delivery)

    # -- the deliveries that wait ---------------------------------------------------

    async def _renew(self) -> None:
        """Renew the leases of the deliveries waiting for a slot and of those being
        handled, three times per visibility timeout, so that none is redelivered
        elsewhere while this worker holds it (the Redis backends renew held leases on
        their own as well)."""
        interval = max(self.broker.options.visibility_timeout / 3, 0.01)
        subscription = self._subscription
        assert subscription is not None
        while not await self._finished.wait(interval):
            waiting = [] if self._draining.is_set() else subscription.buffered_deliveries()
            held = waiting + self._held()
            if held and not await self._extend(held):
                return
        # Finished: what handler threads left running by an abandon still hold, until
        # each thread ends (its delivery is then marked settled) or the broker closes.
        while held := self._held():
            if not await self._extend(held):
                return
            await sleep(interval)

    async def _extend(self, deliveries: list[AsyncDelivery]) -> bool:
        """Renew the leases of ``deliveries`` but those being acked or nacked now (which
        would make the batch refused, and each renewed alone); False once the broker
        is closed."""
        with self._active_lock:
            lost = self._lost
        deliveries = [d for d in deliveries if d._settled is False and d not in lost]
        if not deliveries:
            return True
        try:
            await self.broker.extend(*deliveries)
        except StaleDelivery as exc:  # the others were renewed
            self._lost_leases(exc.deliveries)
        except AlreadySettled:  # one was settled meanwhile: one at a time
            for delivery in deliveries:
                await self._extend_one(delivery)
        except BrokerClosed:
            return False
        except BrokerError as exc:
            log.warning(
                "handler %s: could not renew waiting leases: %s",
                self.spec.name,
                error_text(exc),
                extra=log_fields(self.spec.topic, self.spec.group),
            )
        return True

    async def _extend_one(self, delivery: Any) -> None:
        with contextlib.suppress(AlreadySettled, BrokerClosed):
            try:
                await self.broker.extend(delivery)
            except StaleDelivery as exc:
                self._lost_leases(exc.deliveries)
            except BrokerError as exc:
                log.warning(
                    "handler %s: could not renew %s: %s",
                    self.spec.name,
                    delivery.id,
                    error_text(exc),
                    extra=delivery_fields([delivery]),
                )

    def _lost_while_waiting(self, delivery: AsyncDelivery) -> bool:
        """Whether ``delivery`` waited for a slot while its lease ran out (found by the
        renewal): then it is let go, not handled. The message was back in line
        meanwhile and comes again, maybe to another consumer; handled here too, it
        would run twice, and this run's ack would fail."""
        with self._active_lock:
            if delivery not in self._lost:
                return False
        log.info(
            "handler %s: %s is not handled: its lease ran out while it waited for a slot",
            *(self.spec.name, delivery.id),
            extra=delivery_fields([delivery]),
        )
        self._settler.let_go(delivery, StaleDelivery([delivery]))
        return True

    def _lost_leases(self, deliveries: Sequence[Any]) -> None:
        """The leases of ``deliveries`` ran out although this worker renewed them: say
        so once, and renew them no more (a renewal of each would fail again, at every
        round, for as long as its handler runs)."""
        with self._active_lock:
            self._lost.update(deliveries)
        log.warning(
            "handler %s: the lease of %s ran out while this worker held it (the process "
            "was held up for longer than the visibility timeout?); it is renewed no more, "
            "and the message may be delivered elsewhere",
            self.spec.name,
            ", ".join(d.id for d in deliveries),
            extra=delivery_fields(list(deliveries)),
        )


def _inside(context: AbstractContextManager[None], function: Callable[..., Any]) -> Any:
    """``function``, called inside ``context``, entered where the call runs: in the
    handler's own thread or task, so that what it sets there (a current span) is what
    the handler sees."""
    if is_async_callable(function):

        async def call_inside(*args: Any) -> Any:
            with context:
                return await function(*args)

        return call_inside

    def call_plain_inside(*args: Any) -> Any:
        with context:
            return function(*args)

    return call_plain_inside
