"""One handler at work: a subscription, ``concurrency`` slots that take deliveries
from it and run the handler, and the renewal of the leases of deliveries that wait.

Each slot receives from the handler's one subscription, which fetches (and leases)
``prefetch + 1`` messages at a time, and only when it holds none: the slot keeps one,
so at most ``prefetch`` wait for a slot, and they wait in the subscription, which
hands them back when it is closed. A slot asks for a message only when it is free,
so at most ``concurrency`` handlers run.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from brokerkit._acompat import Background, Event, HandlerCalls, spawn
from brokerkit._broker_async import AsyncBroker
from brokerkit._capabilities import Capability
from brokerkit._compat import is_async_callable
from brokerkit._delivery_async import AsyncDelivery
from brokerkit._hooks import RELAY
from brokerkit._logging import delivery_fields, log_fields
from brokerkit._schedule import MAX_REASON_LENGTH
from brokerkit._subscription_async import AsyncSubscription
from brokerkit.exceptions import AlreadySettled, BrokerClosed, BrokerError
from brokerkit.worker._handler import HandlerSpec
from brokerkit.worker._stats import HandlerStats
from brokerkit.worker._typed import InvalidBody

__all__ = ["POLL", "AsyncRunner"]

log = logging.getLogger("brokerkit.worker")

#: How long a free slot waits for a message before it looks at the stop flag again.
POLL = 0.25
#: The longest a slot pauses after receiving failed, before it tries again.
MAX_PAUSE = 5.0


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
        # The deliveries being handled; a plain lock (never held across I/O), since the
        # slots are threads in the sync worker and the renewal reads the set.
        self._active: set[AsyncDelivery] = set()
        self._active_lock = threading.Lock()
        self._limit = spec.retry.limit(broker.options.max_deliveries)

    async def start(self) -> None:
        """Subscribe and start the slots (and the lease renewal)."""
        spec = self.spec
        self._subscription = await self.broker.subscribe(
            spec.topic, group=spec.group, prefetch=spec.prefetch + 1
        )
        for number in range(spec.concurrency):
            name = f"brokerkit-worker {spec.name} #{number + 1}"
            self._slots.append(spawn(self._slot, name))
        if Capability.ACK in self.broker.capabilities:
            self._renewer = spawn(self._renew, f"brokerkit-worker {spec.name} leases")

    @property
    def busy(self) -> bool:
        """Whether a slot is still running (a handler, or a receive about to end)."""
        return any(not slot.done for slot in self._slots)

    async def stop_fetching(self) -> None:
        """Fetch no more; hand back the deliveries waiting for a slot. Handlers in
        progress go on."""
        self._draining.set()
        if self._subscription is not None:
            await self._subscription.close()

    async def abandon(self) -> None:
        """Stop at once. Where the slot is a task it is cancelled: a coroutine handler
        still running is nacked (an attempt counted), a delivery not yet given to its
        handler is handed back, and one whose handler thread still runs keeps its
        lease (see :meth:`_cut_short`). A slot thread cannot be stopped, and its
        delivery comes back after the visibility timeout unless the handler ends."""
        for slot in self._slots:
            await slot.join(0)
        deadline = time.monotonic() + 1.0
        for slot in self._slots:  # let cancelled tasks hand their deliveries back
            if not slot.done:
                await slot.join(max(deadline - time.monotonic(), 0.0))

    async def finish(self) -> None:
        """Stop renewing leases (after the drain, or after :meth:`abandon`)."""
        self._finished.set()
        if self._renewer is not None:
            await self._renewer.join(1.0)

    # -- the slots ----------------------------------------------------------------

    async def _slot(self) -> None:
        """A slot that never ends before the drain: an error that escapes its loop
        (a bug, not a broker error) is logged with its traceback and the slot starts
        over, so the worker never runs on with fewer slots than it reports."""
        while True:
            try:
                await self._take()
                return
            except Exception as exc:
                log.error(
                    "handler %s: a slot failed and starts over: %s",
                    *(self.spec.name, exc),
                    exc_info=exc,
                    extra=log_fields(self.spec.topic, self.spec.group),
                )
                if await self._draining.wait(POLL):
                    return

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
                failures += 1
                pause = min(POLL * 2**failures, MAX_PAUSE)
                log.warning(
                    "handler %s: receiving from %r failed (again in %.3g s): %s",
                    *(self.spec.name, self.spec.topic, pause, exc),
                    exc_info=None if isinstance(exc, BrokerError) else exc,
                    extra=log_fields(self.spec.topic, self.spec.group),
                )
                await self._draining.wait(pause)
                continue
            failures = 0
            if delivery is None:
                continue
            if self._draining.is_set():
                await self._hand_back(delivery)
                return
            await self._handle(delivery, subscription.buffered)

    async def _handle(self, delivery: AsyncDelivery, waiting: int) -> None:
        self.stats.started(waiting)
        with self._active_lock:
            self._active.add(delivery)
        call = _Call(delivery)
        try:
            await self._run(delivery, call)
        except BaseException:
            # The slot was cancelled (the asyncio worker's hard stop).
            if not delivery.settled:
                await self._cut_short(delivery, call)
            raise
        finally:
            with self._active_lock:
                self._active.discard(delivery)
            self.stats.finished()

    async def _cut_short(self, delivery: AsyncDelivery, call: _Call) -> None:
        """The slot was cancelled with ``delivery`` unsettled. Never given to the
        handler: handed back (no attempt counted). Its handler thread still runs: left
        alone, leased until it settles or its lease runs out, so no other consumer gets
        it meanwhile. Its handler started and was cancelled: a counted nack, so that a
        handler that always hangs still reaches the delivery limit."""
        state = call.abandon()
        if state == _Call.PENDING:
            await self._hand_back(delivery)
        elif state == _Call.RUNNING_IN_THREAD:
            log.warning(
                "handler %s: its thread still runs %s; it keeps its lease",
                *(self.spec.name, delivery.id),
                extra=delivery_fields([delivery]),
            )
        else:
            reason = "cancelled by a hard stop of the worker"
            if self._limit is not None and delivery.attempt >= self._limit:
                await self._nack(delivery, "dead_lettered", requeue=False, reason=reason)
            else:
                await self._nack(delivery, "retried", requeue=True, reason=reason)

    async def _run(self, delivery: AsyncDelivery, call: _Call) -> None:
        spec = self.spec
        try:
            args = spec.binding.arguments(delivery)
        except InvalidBody as exc:
            if RELAY.deliver:
                RELAY.deliver_end(delivery, "dead-letter", exc)
            log.warning(
                "handler %s: message %s has an invalid body: %s",
                spec.name,
                delivery.id,
                exc,
                extra=delivery_fields([delivery]),
            )
            await self._nack(
                delivery, "dead_lettered", requeue=False, reason=f"invalid body: {exc}"
            )
            return
        try:
            await self._calls.call(call.wrap(spec.function), *args)
        except Exception as exc:
            if RELAY.deliver:  # the handler's error, on the delivery's span and histogram
                retried = Capability.ACK in self.broker.capabilities and not (
                    self._limit is not None and delivery.attempt >= self._limit
                )
                RELAY.deliver_end(delivery, "nack" if retried else "dead-letter", exc)
            await self._failed(delivery, exc)
            return
        if not delivery.settled:
            try:
                await delivery.ack()
            except BrokerError as exc:
                log.warning(
                    "handler %s: could not ack %s: %s",
                    spec.name,
                    delivery.id,
                    exc,
                    extra=delivery_fields([delivery]),
                )
                await self._release(delivery)
                return
        self.stats.count("processed")

    async def _failed(self, delivery: AsyncDelivery, exc: Exception) -> None:
        """The handler raised: retry the delivery under the policy, or dead-letter it."""
        self.stats.count("failed")
        name, reason = self.spec.name, f"{type(exc).__name__}: {exc}"
        if delivery.settled:
            log.warning(
                "handler %s raised after settling %s: %s",
                name,
                delivery.id,
                reason,
                extra=delivery_fields([delivery]),
            )
        elif Capability.ACK not in self.broker.capabilities:
            # at-most-once: the message is gone whatever the worker does
            log.warning(
                "handler %s failed on %s, not redelivered: %s",
                name,
                delivery.id,
                reason,
                extra=delivery_fields([delivery]),
            )
            await self._nack(delivery, "", requeue=False, reason=reason)
        elif self._limit is not None and delivery.attempt >= self._limit:
            log.info(
                "handler %s failed on %s (attempt %d of %d), dead-lettered: %s",
                *(name, delivery.id, delivery.attempt, self._limit, reason),
                exc_info=exc,
                extra=delivery_fields([delivery]),
            )
            await self._nack(delivery, "dead_lettered", requeue=False, reason=reason)
        else:
            delay = self._delay(delivery)
            log.info(
                "handler %s failed on %s (attempt %d), retried in %.3g s: %s",
                *(name, delivery.id, delivery.attempt, delay, reason),
                exc_info=exc,
                extra=delivery_fields([delivery]),
            )
            await self._nack(delivery, "retried", requeue=True, delay=delay, reason=reason)

    async def _nack(
        self,
        delivery: AsyncDelivery,
        outcome: str,
        *,
        requeue: bool,
        reason: str,
        delay: float = 0.0,
    ) -> None:
        try:
            await delivery.nack(requeue=requeue, delay=delay or None, reason=_reason(reason))
        except BrokerError as exc:
            log.warning(
                "handler %s: could not nack %s: %s",
                self.spec.name,
                delivery.id,
                exc,
                extra=delivery_fields([delivery]),
            )
            await self._release(delivery)
            return
        if outcome:
            self.stats.count(outcome)

    def _delay(self, delivery: AsyncDelivery) -> float:
        """The retry policy's delay for this attempt; a policy that fails or gives
        anything but a finite number of seconds, 0 or more, is a bug in the policy:
        logged, and the delivery is retried without a delay."""
        policy = self.spec.retry
        try:
            delay = policy.delay(delivery.attempt)
        except Exception as exc:
            log.error(
                "handler %s: retry policy %r failed on attempt %d; retrying %s at once: %s",
                *(self.spec.name, policy, delivery.attempt, delivery.id, exc),
                exc_info=exc,
                extra=delivery_fields([delivery]),
            )
            return 0.0
        valid = isinstance(delay, (int, float)) and not isinstance(delay, bool)
        if not (valid and math.isfinite(delay) and delay >= 0):
            log.error(
                "handler %s: retry policy %r gave the delay %r for attempt %d (valid: a "
                "finite number of seconds, 0 or more); retrying %s at once",
                *(self.spec.name, policy, delay, delivery.attempt, delivery.id),
                extra=delivery_fields([delivery]),
            )
            return 0.0
        return float(delay)

    async def _release(self, delivery: AsyncDelivery) -> None:
        """Settling ``delivery`` failed: let it go, so that it is not held (its lease
        renewed by the worker or the backend) for as long as the process runs. A plain
        nack first; failing that, it is marked settled, which stops every renewal, and
        the lease runs out within a visibility timeout."""
        if delivery.settled or Capability.ACK not in self.broker.capabilities:
            return
        try:
            await delivery.nack(requeue=True)
        except BrokerError as exc:
            log.warning(
                "handler %s: could not hand %s back either; its lease is left to run out: %s",
                *(self.spec.name, delivery.id, exc),
                extra=delivery_fields([delivery]),
            )
        if not delivery.settled:
            delivery._mark_settled()

    async def _hand_back(self, delivery: AsyncDelivery) -> None:
        with contextlib.suppress(BrokerError):
            await self.broker._hand_back([delivery])

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
            with self._active_lock:
                active = [d for d in self._active if not d.settled]
            held = waiting + active
            if held:
                await self._extend(held)

    async def _extend(self, deliveries: list[AsyncDelivery]) -> None:
        try:
            await self.broker.extend(*deliveries)
        except AlreadySettled:  # one was settled meanwhile: one at a time
            for delivery in deliveries:
                await self._extend_one(delivery)
        except BrokerClosed:
            return
        except BrokerError as exc:
            log.warning(
                "handler %s: could not renew waiting leases: %s",
                self.spec.name,
                exc,
                extra=log_fields(self.spec.topic, self.spec.group),
            )

    async def _extend_one(self, delivery: Any) -> None:
        with contextlib.suppress(AlreadySettled, BrokerClosed):
            try:
                await self.broker.extend(delivery)
            except BrokerError as exc:
                log.warning(
                    "handler %s: could not renew %s: %s",
                    self.spec.name,
                    delivery.id,
                    exc,
                    extra=delivery_fields([delivery]),
                )


class _Call:
    """Where one call of a handler is, so that a hard stop knows what to do with its
    delivery: the handler not started yet, running in a thread, or started on the
    loop (or ended). A handler thread that ends after a hard stop abandoned it lets
    its delivery go (marks it settled: nobody renews its lease any more), so that it
    comes back after the visibility timeout even while the broker stays open."""

    PENDING = "pending"
    RUNNING_IN_THREAD = "running in a thread"
    STARTED = "started"

    def __init__(self, delivery: AsyncDelivery) -> None:
        self._delivery = delivery
        self._lock = threading.Lock()
        self._state = self.PENDING
        self._abandoned = False

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
                    return None
                self._state = self.RUNNING_IN_THREAD
            try:
                return function(*args)
            finally:
                self._ended()

        return called

    def _ended(self) -> None:
        with self._lock:
            self._state = self.STARTED
            if self._abandoned and not self._delivery.settled:
                self._delivery._mark_settled()

    def abandon(self) -> str:
        """Where the call is now; a plain function not yet started never will be."""
        with self._lock:
            self._abandoned = True
            return self._state


def _reason(text: str) -> str:
    """An error's text as a dead-letter reason: one line, UTF-8-safe, short enough."""
    line = " ".join(text.split()).encode("utf-8", "replace").decode("utf-8")
    if len(line) > MAX_REASON_LENGTH:
        line = line[: MAX_REASON_LENGTH - 3] + "..."
    return line or "failed"
