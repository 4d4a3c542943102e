"""Settling a delivery once its handler is done with it: the ack's or nack's failure,
a retry under the handler's policy (with its delay) or a dead letter at the delivery
limit, the hand-back of a delivery never handled, and letting go of one that cannot be
settled. The slots of each :class:`AsyncRunner` call it."""

from __future__ import annotations

import contextlib
import logging
import time

from brokerkit._broker_async import AsyncBroker
from brokerkit._capabilities import Capability
from brokerkit._delivery_async import AsyncDelivery
from brokerkit._hooks import RELAY
from brokerkit._logging import delivery_fields
from brokerkit._schedule import LATEST_DUE, MAX_REASON_LENGTH, finite_seconds
from brokerkit.exceptions import BrokerError, StaleDelivery
from brokerkit.worker._call import HandlerCall
from brokerkit.worker._error_text import error_text
from brokerkit.worker._handler import HandlerSpec
from brokerkit.worker._retry import Fixed, RetryPolicy
from brokerkit.worker._stats import HandlerStats
from brokerkit.worker._tracebacks import log_error

__all__ = ["AsyncSettler"]

log = logging.getLogger("brokerkit.worker")


class AsyncSettler:
    """Settles the deliveries of one :class:`HandlerSpec` on ``broker`` after their
    handler, and counts the outcomes in ``stats``; ``limit`` is the attempt at which a
    failure is dead-lettered (None: never)."""

    def __init__(
        self, broker: AsyncBroker, spec: HandlerSpec, stats: HandlerStats, limit: int | None
    ) -> None:
        self.broker = broker
        self.spec = spec
        self.stats = stats
        self._limit = limit

    async def broken(self, delivery: AsyncDelivery, exc: Exception, call: HandlerCall) -> None:
        """Handling ``delivery`` failed with an error no step expects: nacked, an
        attempt counted (dead-lettered at the delivery limit), or let go if even that
        fails (marked settled whatever happens, so that nothing renews its lease).
        Counted as failed (once: not again if its handler's failure was counted)."""
        reason = f"worker error: {type(exc).__name__}: {error_text(exc)}"
        reason = self.count_failed(call, reason)
        acks = Capability.ACK in self.broker.capabilities
        last = acks and self._limit is not None and delivery.attempt >= self._limit
        outcome = self._given_up_unknown(exc)
        try:
            if acks:
                try:
                    if last:
                        done = await self.nack(
                            delivery, "dead_lettered", requeue=False, reason=reason
                        )
                        outcome = self._given_up(done)
                    else:
                        await self.nack(delivery, "retried", requeue=True, reason=reason)
                except Exception as error:
                    # a second unexpected error is dropped: the slot logs the first one
                    outcome = self._given_up_unknown(error)
                except BaseException as error:
                    outcome = self._given_up_unknown(error)
                    raise
        finally:
            if not delivery.settled:
                self.let_go(delivery, exc)
            if last:  # the message's one ERROR line (its handler's failure, if it failed)
                self._log_given_up(delivery, call, False, outcome)

    async def cut_short(self, delivery: AsyncDelivery, call: HandlerCall) -> None:
        """The slot was cancelled with ``delivery`` unsettled. Never given to the
        handler: handed back (no attempt counted). Its handler thread still runs: left
        alone, its lease renewed until the thread ends (its result is then dropped) or
        the broker closes, so no other consumer gets it meanwhile. Its handler started
        and was cancelled: a counted nack, so that a handler that always hangs still
        reaches the delivery limit; if that nack fails or is cancelled too, it is let
        go (:meth:`give_up`), and comes back when its lease runs out. Counted as
        failed: an attempt that did not succeed (once: a handler that failed, its nack
        cut short, was counted already). A handler that returned, its ack cut short,
        is acked now (counted processed): it did not fail."""
        state = call.abandon()
        if state == HandlerCall.PENDING:
            await self.hand_back(delivery)
        elif state == HandlerCall.RUNNING_IN_THREAD:
            log.warning(
                "handler %s: its thread still runs %s; it keeps its lease",
                *(self.spec.name, delivery.id),
                extra=delivery_fields([delivery]),
            )
            # the slot leaves the call: counted and logged when the thread ends
            call.when_dropped(lambda error: self.dropped(delivery, error, call))
        elif call.returned and call.failure is None:
            try:
                await self.ack(delivery, again=True)
            except BaseException as exc:  # cancelled again: nobody tries again
                self.give_up(delivery, exc)
                raise
        else:
            # An attempt that did not succeed, counted as one: failed (as the retried
            # and dead_lettered it is counted under are failed deliveries).
            cancelled = call.failure is None
            reason = self.count_failed(call, "cancelled by a hard stop of the worker")
            last = self._limit is not None and delivery.attempt >= self._limit
            outcome = ""
            try:
                if last:
                    done = await self.nack(delivery, "dead_lettered", requeue=False, reason=reason)
                    outcome = self._given_up(done)
                else:
                    await self.nack(delivery, "retried", requeue=True, reason=reason)
            except BaseException as exc:
                # The nack failed or was cancelled (the slot's second join): the worker
                # is going and nobody will settle it; the backend may hold it for a
                # settle again (a Redis backend renews it), so it is let go.
                outcome = self._given_up_unknown(exc)
                self.give_up(delivery, exc)
                raise
            finally:
                if last:  # one ERROR line for the message given up, whatever its nack did
                    self._log_given_up(delivery, call, cancelled, outcome)

    def dropped(
        self, delivery: AsyncDelivery, exc: BaseException | None, call: HandlerCall
    ) -> None:
        """A handler thread ended after a hard stop abandoned it (its delivery let go,
        to come back when its lease runs out): one that raised counts as failed, but
        neither retried nor dead_lettered (the worker did not hand it back); one that
        returned is not counted processed (it was not acked)."""
        how = "returned" if exc is None else f"raised {type(exc).__name__}: {error_text(exc)}"
        if exc is not None:
            self.count_failed(call, how)
        log.warning(
            "handler %s ended on %s after the worker abandoned it (%s); its result is "
            "dropped, and the message comes again after its lease runs out",
            *(self.spec.name, delivery.id, how),
            extra=delivery_fields([delivery]),
        )

    async def failed(self, delivery: AsyncDelivery, exc: BaseException, call: HandlerCall) -> None:
        """The handler raised: retry the delivery under the policy, or dead-letter it.

        Logged, with the traceback, so that a message that always fails shows at
        WARNING without flooding the log: a failure retried within a second (a delay
        under 1 s, 0 included) at attempts 1, 2, 4, 8... (a loop of n attempts logs
        about log2(n) lines), at DEBUG otherwise; one retried a second or more later
        always at WARNING (it fails once a second at most). A message given
        up on (dead-lettered, or dropped where the backend does not redeliver or has no
        dead-letter topic) is logged at ERROR, once its nack is done."""
        name, reason = self.spec.name, f"{type(exc).__name__}: {error_text(exc)}"
        self.count_failed(call, reason)
        topic, attempt = self.spec.topic, delivery.attempt
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
            log_error(
                log,
                logging.ERROR,
                "handler %s failed on %s (topic %r), not redelivered (the backend has no "
                "ACK), dropped: %s",
                *(name, delivery.id, topic, reason),
                error=exc,
                extra=delivery_fields([delivery]),
            )
            await self.nack(delivery, "", requeue=False, reason=reason)
        elif self._limit is not None and attempt >= self._limit:
            # logged once the nack is done, with what it did: a nack that failed left
            # the message to come again (see release). One that raised (cut short by a
            # hard stop, or a bug) is settled again by the step that follows, and that
            # step logs the message's one ERROR line (cut_short, broken); unless the
            # delivery is settled already, and no step follows.
            call.error = exc
            try:
                done = await self.nack(delivery, "dead_lettered", requeue=False, reason=reason)
            except BaseException as error:
                # the step that follows: broken() for an error (a delivery not settled),
                # cut_short() for a cancel (a delivery whose nack is not on its way)
                follows = (
                    not delivery.settled
                    if isinstance(error, Exception)
                    else delivery._settled is False
                )
                if not follows:
                    self._log_given_up(delivery, call, False, self._given_up_unknown(error))
                raise
            self._log_given_up(delivery, call, False, self._given_up(done))
        else:
            delay = self.delay(delivery)
            message = "handler %s failed on %s (topic %r, attempt %s), retried in %.3g s: %s"
            args = (name, delivery.id, topic, self._attempt_text(attempt, delay), delay, reason)
            # thinned wherever it may loop fast: a retry within a second
            level = logging.WARNING if _always_shown(delay) or _shown(attempt) else logging.DEBUG
            log_error(log, level, message, *args, error=exc, extra=delivery_fields([delivery]))
            await self.nack(delivery, "retried", requeue=True, delay=delay, reason=reason)

    def _log_given_up(
        self, delivery: AsyncDelivery, call: HandlerCall, cancelled: bool, outcome: str
    ) -> None:
        """The one ERROR line about ``delivery`` given up on at its last attempt, once
        its nack is done with ``outcome`` (:meth:`_given_up`): its handler failed (with
        the handler's traceback, and its reason) or was ``cancelled`` by a hard stop."""
        what = "was cancelled by a hard stop of the worker" if cancelled else "failed"
        message = "handler %s %s on %s (topic %r, attempt %d of %d), %s: %s"
        args: tuple[object, ...] = (self.spec.name, what, delivery.id, self.spec.topic)
        args += (delivery.attempt, self._limit, outcome, call.failure)
        if call.error is None:
            log.error(message, *args, extra=delivery_fields([delivery]))
        else:
            log_error(
                log,
                logging.ERROR,
                message,
                *args,
                error=call.error,
                extra=delivery_fields([delivery]),
            )

    def count_failed(self, call: HandlerCall, reason: str) -> str:
        """Count the attempt of ``call`` as failed, with ``reason``, unless it was
        counted already (then its first reason stands); the reason it is counted with."""
        if call.failure is None:
            call.failure = reason
            self.stats.count("failed")
        return call.failure

    def _attempt_text(self, attempt: int, delay: float) -> str:
        """``attempt`` as a retried failure's line shows it (``3 of 5`` under a limit);
        on a WARNING line followed by DEBUG ones, of a policy whose delay is always the
        same (``Immediate``, ``Fixed``), with the attempt whose line is the next at
        WARNING or ERROR (``8, next shown at 16``). A policy whose delay changes may
        reach a delay of a second, always shown, before that attempt: not named."""
        text = str(attempt) if self._limit is None else f"{attempt} of {self._limit}"
        steady = type(self.spec.retry).delay in (RetryPolicy.delay, Fixed.delay)
        if _always_shown(delay) or not steady or not _shown(attempt):
            return text
        following = 2 * attempt if self._limit is None else min(2 * attempt, self._limit)
        return text if following <= attempt + 1 else f"{text}, next shown at {following}"

    def _given_up(self, done: bool) -> str:
        """What a nack that gives up on a delivery did with it (``done``: it did not
        fail)."""
        if Capability.DEAD_LETTER in self.broker.capabilities:
            given_up, not_given_up = "dead-lettered", "not dead-lettered"
        else:
            given_up = "dropped (the backend has no dead-letter topic)"
            not_given_up = "not dropped"
        return given_up if done else f"{not_given_up}: its nack failed, so it comes again"

    def _given_up_unknown(self, error: BaseException) -> str:
        """What a nack that gives up on a delivery did, when it raised ``error`` (it
        was cut short, or failed as no nack should): perhaps nothing."""
        if Capability.DEAD_LETTER in self.broker.capabilities:
            given_up = "dead-lettered"
        else:
            given_up = "dropped (the backend has no dead-letter topic)"
        how = (
            f"raised {type(error).__name__}: {error_text(error)}"
            if isinstance(error, Exception)
            else "was cut short"
        )
        return (
            f"{given_up} only if its nack reached the server: the nack {how} (if it "
            "did not, the message comes again once its lease runs out)"
        )

    async def nack(
        self,
        delivery: AsyncDelivery,
        outcome: str,
        *,
        requeue: bool,
        reason: str,
        delay: float = 0.0,
    ) -> bool:
        """Nack ``delivery`` and count ``outcome``; whether the nack was done (if it
        failed, the delivery is released: :meth:`release`)."""
        try:
            await delivery.nack(requeue=requeue, delay=delay or None, reason=_reason(reason))
        except BrokerError as exc:
            log.warning(
                "handler %s: could not nack %s: %s",
                self.spec.name,
                delivery.id,
                error_text(exc),
                extra=delivery_fields([delivery]),
            )
            await self.release(delivery, exc)
            return False
        if outcome:
            self.stats.count(outcome)
        return True

    async def ack(self, delivery: AsyncDelivery, *, again: bool = False) -> None:
        """Ack ``delivery``, its handler done, and count it processed; if the ack fails,
        the delivery is released (:meth:`release`). ``again``: an ack a hard stop cut
        short came first, and may have been applied: the lease it finds gone
        (:class:`~brokerkit.StaleDelivery`) is said so, and counted processed."""
        if not delivery.settled:
            try:
                await delivery.ack()
            except BrokerError as exc:
                if again and isinstance(exc, StaleDelivery):
                    log.info(
                        "handler %s: %s was handled; its ack, cut short by the hard stop, "
                        "may have been applied (the broker no longer holds its lease; if "
                        "not, it comes again when that lease runs out): %s",
                        *(self.spec.name, delivery.id, error_text(exc)),
                        extra=delivery_fields([delivery]),
                    )
                    if not delivery.settled:
                        self.let_go(delivery, exc)
                    self.stats.count("processed")
                    return
                log.warning(
                    "handler %s: could not ack %s: %s",
                    self.spec.name,
                    delivery.id,
                    error_text(exc),
                    extra=delivery_fields([delivery]),
                )
                await self.release(delivery, exc)
                return
        self.stats.count("processed")

    def delay(self, delivery: AsyncDelivery) -> float:
        """The retry policy's delay for this attempt; a policy that fails or gives
        anything but a finite number of seconds, 0 or more, is a bug in the policy:
        logged, and the delivery is retried without a delay."""
        policy = self.spec.retry
        try:
            delay = policy.delay(delivery.attempt)
        except Exception as exc:
            log_error(
                log,
                logging.ERROR,
                "handler %s: retry policy %r failed on attempt %d; retrying %s at once: %s",
                *(self.spec.name, policy, delivery.attempt, delivery.id, error_text(exc)),
                error=exc,
                extra=delivery_fields([delivery]),
            )
            return 0.0
        seconds = finite_seconds(delay)
        # A nack refuses a delay due after LATEST_DUE (a "never" of 1e300, milliseconds
        # given as seconds): its failure handed the delivery back at once, logged as
        # "retried in 1e+12 s" and a failed nack.
        if seconds is None or not 0 <= seconds <= LATEST_DUE - time.time():
            log.error(
                "handler %s: retry policy %r gave the delay %r for attempt %d (valid: a "
                "finite number of seconds, 0 or more, falling due by the end of the year "
                "9999); retrying %s at once",
                *(self.spec.name, policy, delay, delivery.attempt, delivery.id),
                extra=delivery_fields([delivery]),
            )
            return 0.0
        return seconds

    async def release(self, delivery: AsyncDelivery, error: BrokerError) -> None:
        """Settling ``delivery`` failed with ``error``: let it go, so that it is not held
        (its lease renewed by the worker or the backend) for as long as the process
        runs. A plain nack first; failing that, it is let go (:meth:`let_go`), and
        the lease runs out within a visibility timeout."""
        if delivery.settled:
            return
        if Capability.ACK in self.broker.capabilities:
            try:
                await delivery.nack(requeue=True)
            except BrokerError as exc:
                log.warning(
                    "handler %s: could not hand %s back either; its lease is left to run out: %s",
                    *(self.spec.name, delivery.id, error_text(exc)),
                    extra=delivery_fields([delivery]),
                )
            except BaseException as exc:  # cancelled: nobody tries again
                self.give_up(delivery, exc)
                raise
        if not delivery.settled:
            self.let_go(delivery, error)

    def let_go(self, delivery: AsyncDelivery, error: BaseException) -> None:
        """Mark ``delivery`` settled without settling it (nothing renews its lease any
        more) and end its delivery hooks ``"unsettled"`` with what its handler raised,
        if it raised, else ``error``, what stopped its settlement."""
        delivery._mark_settled()
        RELAY.deliver_end(delivery, "unsettled", error)

    def give_up(self, delivery: AsyncDelivery, error: BaseException) -> None:
        """A settle of ``delivery`` failed or was cancelled, and the worker will not
        try again: let it go (:meth:`let_go`) unless it is settled, or still settling
        (a settle whose work goes on where it cannot be cancelled ends it either way).
        A Redis backend renews the lease of a delivery whose settle failed, for its
        holder to settle it again: held by nobody, it would be renewed as long as the
        broker is open, and never come back."""
        if delivery._settled is False:
            self.let_go(delivery, error)

    async def hand_back(self, delivery: AsyncDelivery) -> None:
        """Hand ``delivery`` back, no attempt counted: its hooks end ``"unsettled"``
        (the subscription handed it to the worker, so they started)."""
        RELAY.deliver_end(delivery, "unsettled")
        try:
            with contextlib.suppress(BrokerError):
                await self.broker._hand_back([delivery])
        finally:
            # A hand-back that failed or was cancelled is not tried again: marked
            # settled (its hooks have ended), so that nothing renews its lease and it
            # comes back when that runs out.
            if delivery._settled is False:
                delivery._mark_settled()


#: The shortest retry delay whose failures are each logged at WARNING: a message
#: retried that much later fails once a second at most. One retried sooner may loop
#: fast (Fixed(0.005): some 200 attempts a second), and is thinned (:func:`_shown`).
ALWAYS_SHOWN_DELAY = 1.0


def _always_shown(delay: float) -> bool:
    """Whether a failure retried after ``delay`` seconds is logged at WARNING
    whatever its attempt."""
    return delay >= ALWAYS_SHOWN_DELAY


def _shown(attempt: int) -> bool:
    """Whether a failure retried within a second at ``attempt`` is logged at WARNING:
    at attempts 1, 2, 4, 8... (powers of two), so that a message failing in a loop
    logs about log2(n) lines in n attempts; the others are logged at DEBUG."""
    return attempt >= 1 and attempt & (attempt - 1) == 0


def _reason(text: str) -> str:
    """An error's text as a dead-letter reason: one line, UTF-8-safe, short enough."""
    line = " ".join(text.split()).encode("utf-8", "replace").decode("utf-8")
    if len(line) > MAX_REASON_LENGTH:
        line = line[: MAX_REASON_LENGTH - 3] + "..."
    return line or "failed"
