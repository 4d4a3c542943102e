"""Settling deliveries: the broker's ``ack``, ``nack`` and ``extend``, checking what
they were given, and running a settling primitive between the settlement hooks."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from brokerkit._capabilities import Capability
from brokerkit._delivery_async import SETTLING, AsyncDelivery
from brokerkit._error_text import value_text
from brokerkit._hooks import RELAY
from brokerkit._options import BrokerOptions
from brokerkit._schedule import (
    check_lease_seconds,
    check_nack_delay,
    check_reason,
    check_requeue,
)
from brokerkit.exceptions import AlreadySettled, DeliveryError, ReplicationTimeout, StaleDelivery

__all__ = ["AsyncSettling", "settle", "settleable"]

_NOT_A_SUBSCRIPTION = object()

#: What settles or unsettles the deliveries of a settling call once its work has
#: ended, called with the error that work raised (None if it succeeded).
Ending = Callable[[BaseException | None], None]

#: The attribute of a settling primitive's cancellation that :func:`goes_on` sets.
_GOES_ON = "_brokerkit_goes_on"


class AsyncSettling:
    """The settling methods of :class:`AsyncBroker` (a base of it): ``ack``, ``nack``
    and ``extend``, built on the settling primitives of :class:`AsyncBackend`."""

    options: BrokerOptions
    capabilities: ClassVar[Capability]

    if TYPE_CHECKING:  # provided by AsyncBroker and AsyncBackend

        @classmethod
        def require(cls, capability: Capability, what: str) -> None: ...

        def _check_open(self) -> None: ...

        @staticmethod
        def _mark(deliveries: Iterable[AsyncDelivery]) -> None: ...

        async def _ack(self, deliveries: Sequence[AsyncDelivery]) -> None: ...

        async def _nack(self, deliveries: Sequence[AsyncDelivery], requeue: bool) -> None: ...

        async def _nack_with(
            self,
            deliveries: Sequence[AsyncDelivery],
            requeue: bool,
            delay: float | None,
            reason: str | None,
        ) -> None: ...

        async def _extend(self, deliveries: Sequence[AsyncDelivery], seconds: float) -> None: ...

    async def ack(self, *deliveries: AsyncDelivery) -> None:
        """Mark deliveries done, in one round trip where the backend can.

        :raises AlreadySettled: one was settled before (or is being settled now), or
            is named twice; none was changed.
        :raises StaleDelivery: a lease had expired; the rest were acked.
        :raises DeliveryError: one is not a delivery (a list of them: pass them
            unpacked), or came from another broker; none was changed.
        :raises BrokerClosed: the broker is closed; none was changed (the leases run
            out on their own).
        """
        checked = settleable(self, deliveries)
        if Capability.ACK in self.capabilities:
            await settle(self, checked, None, self._ack, checked)
        else:
            self._mark(checked)
            if RELAY.settle:
                RELAY.settled(self, checked, None)

    async def nack(
        self,
        *deliveries: AsyncDelivery,
        requeue: bool = True,
        delay: float | None = None,
        reason: str | None = None,
    ) -> None:
        """Hand deliveries back: redelivered (``requeue=True``) or dead-lettered.

        A message that has reached ``max_deliveries`` is dead-lettered even when
        ``requeue`` is true. Without :attr:`Capability.ACK` this only marks the
        deliveries settled.

        :param delay: with ``requeue``, redeliver no earlier than this many seconds
            from now (needs :attr:`Capability.DELAY`); the broker holds the message,
            so the delay survives this consumer's crash. The redelivery counts an
            attempt like any other. ``None`` or 0: at once.
        :param reason: a short text (1 to 1000 characters) recorded as the
            dead letter's ``x-dead-letter-reason`` when this nack dead-letters the
            message (``requeue=False``, or ``max_deliveries`` reached), in place of
            ``"rejected"`` / ``"max_deliveries"``. Every built-in backend with
            dead letters records it; a third-party backend records it if it
            implements :meth:`_nack_with`.
        :raises InvalidOption: ``requeue`` is not a bool; a negative, NaN or infinite
            delay, or one falling due after the end of the year 9999
            (:data:`~brokerkit._schedule.LATEST_DUE`), a delay with ``requeue=False``,
            or a reason that is not a str of 1 to 1000 characters; nothing was settled.
        :raises Unsupported: a delay on a backend without DELAY; nothing was settled.
        :raises AlreadySettled, DeliveryError, BrokerClosed: as for :meth:`ack`; nothing
            was settled.
        :raises StaleDelivery: a lease had expired; the rest were settled.
        """
        check_requeue(requeue)
        held = check_nack_delay(delay, requeue)
        text = check_reason(reason)
        if held is not None:
            self.require(Capability.DELAY, "delay a redelivery (nack(delay=...))")
        checked = settleable(self, deliveries)
        if Capability.ACK not in self.capabilities:
            self._mark(checked)
            if RELAY.settle:
                RELAY.settled(self, checked, requeue, reason=text)
        elif held is None and text is None:
            await settle(self, checked, requeue, self._nack, checked, requeue)
        else:
            await settle(
                self, checked, requeue, self._nack_with, checked, requeue, held, text, reason=text
            )

    async def extend(self, *deliveries: AsyncDelivery, seconds: float | None = None) -> None:
        """Renew the lease of unsettled deliveries for ``seconds`` from now
        (default: the visibility timeout).

        :param seconds: an int or float from 0.001 to 31536000 (365 days, the bounds
            of ``visibility_timeout``), or None for the visibility timeout.
        :raises InvalidOption: ``seconds`` is not such a number (a str, a bool, NaN,
            infinite, 0 or less, or more than 365 days); nothing was sent.
        :raises StaleDelivery: a lease had already expired.
        :raises AlreadySettled, DeliveryError, BrokerClosed: as for :meth:`ack`;
            nothing was renewed.
        :raises Unsupported: the backend has no ACK (no leases).
        """
        self.require(Capability.ACK, "extend a lease")
        duration = (
            self.options.visibility_timeout if seconds is None else check_lease_seconds(seconds)
        )
        checked = settleable(self, deliveries)
        try:
            await self._extend(checked, duration)
        except StaleDelivery as exc:
            if RELAY.settle:
                RELAY.lease_lost(exc.deliveries)
            raise


def settleable(broker: AsyncSettling, deliveries: Sequence[AsyncDelivery]) -> list[AsyncDelivery]:
    """``deliveries`` as a list, once each is known to be an unsettled delivery of
    ``broker``'s, named once.

    :raises BrokerClosed: the broker is closed.
    :raises DeliveryError: one is not a delivery, or came from another broker.
    :raises AlreadySettled: one was settled before (or is being settled now), or is
        named twice.
    """
    broker._check_open()
    checked = list(deliveries)
    # A batch is usually one subscription's, of one class: its broker and the class
    # are looked at once.
    subscription: Any = _NOT_A_SUBSCRIPTION
    kind: type | None = None
    # Whether every class hashes as object does (by identity): a set of the
    # deliveries themselves then tells twice-named ones apart, as a set of their id()s
    # does at three times the cost.
    by_identity = True
    for delivery in checked:
        # The slots behind .broker and .settled, read directly: this runs per delivery.
        if type(delivery) is not kind:
            if not isinstance(delivery, AsyncDelivery):
                raise _not_a_delivery(delivery)
            kind = type(delivery)
            by_identity = by_identity and kind.__hash__ is object.__hash__
        if delivery.subscription is not subscription:
            if delivery.subscription.broker is not broker:
                raise DeliveryError(
                    f"delivery {delivery.id} came from another broker "
                    f"({delivery.broker.url}); settle it through the broker that "
                    "delivered it"
                )
            subscription = delivery.subscription
        if delivery._settled:
            raise _settled_before(delivery)
    if len(checked) > 1:
        distinct = set(checked) if by_identity else set(map(id, checked))
        if len(distinct) != len(checked):
            raise AlreadySettled("the same delivery was passed twice")
    return checked


async def settle(
    broker: AsyncSettling,
    deliveries: list[AsyncDelivery],
    requeue: bool | None,
    primitive: Any,
    *args: Any,
    reason: str | None = None,
) -> None:
    """Run the ack (``requeue`` None) or nack primitive, mark the deliveries settled
    and tell the settlement hooks (``reason``: the caller's, for a dead letter).

    ``deliveries`` (from :func:`settleable`) are marked :data:`SETTLING` before the
    primitive runs, so that an ack or nack of one of them made meanwhile raises
    :class:`AlreadySettled`; if the primitive fails (but for :class:`StaleDelivery`
    and :class:`ReplicationTimeout`, which settle), they are unsettled again. So is
    a cancelled call, unless its primitive said (:func:`goes_on`) that its work goes
    on: the deliveries then stay :data:`SETTLING` until that work ends, and how it
    ends settles or unsettles them as above.

    :raises AlreadySettled: one is being settled by another call (a thread's, between
        its :func:`settleable` and here); none was changed.
    """
    for marked, delivery in enumerate(deliveries):
        if delivery._settled is not False:
            _unmark(deliveries[:marked])
            raise _settled_before(delivery)
        delivery._settled = SETTLING
    try:
        await primitive(*args)
    except BaseException as exc:
        when_ended = exc.__dict__.pop(_GOES_ON, None)
        if when_ended is None:
            _ended(broker, deliveries, requeue, reason, exc)
        else:
            when_ended(functools.partial(_ended, broker, deliveries, requeue, reason))
        raise
    broker._mark(deliveries)
    if RELAY.settle:
        RELAY.settled(broker, deliveries, requeue, reason=reason)


def goes_on(cancelled: BaseException, when_ended: Callable[[Ending], None]) -> None:
    """Say, on the cancellation of a settling primitive, that its work was not
    cancelled: it goes on where it cannot be stopped (the thread adapter's worker
    thread), and may settle the deliveries yet.

    :func:`settle` then leaves them :data:`SETTLING` (an ack or nack of one meanwhile
    raises :class:`AlreadySettled`) and calls ``when_ended`` with an :data:`Ending`,
    for the primitive to call once, with what its work raised (None if nothing), when
    that work ends: the deliveries are then settled and the hooks told, or unsettled,
    as for a call that was not cancelled.
    """
    setattr(cancelled, _GOES_ON, when_ended)


def _ended(
    broker: AsyncSettling,
    deliveries: list[AsyncDelivery],
    requeue: bool | None,
    reason: str | None,
    error: BaseException | None,
) -> None:
    """What the end of a settling primitive (``error``: what it raised, if anything)
    makes of ``deliveries``: settled, the hooks told; or, if it failed (but for
    :class:`StaleDelivery` and :class:`ReplicationTimeout`), unsettled again, to be
    settled again."""
    stale: Sequence[Any] = ()
    if isinstance(error, StaleDelivery):
        stale = error.deliveries
    elif isinstance(error, ReplicationTimeout):
        # applied on the master: settled, if not yet replicated, but not the stale
        # ones, left to another consumer
        stale = error.stale
    elif error is not None:
        _unmark(deliveries)  # not settled (a cancelled call too): it may be settled again
        return
    broker._mark(deliveries)
    if RELAY.settle:
        RELAY.settled(broker, deliveries, requeue, stale, reason=reason)


def _not_a_delivery(value: object) -> DeliveryError:
    """The error for ``value``, given to settle where a delivery of this API belongs;
    a delivery of the other API (sync for asyncio, or the reverse: one memory:// name
    is one broker for both) is named as such, with the broker that can settle it."""
    kind, expected = type(value).__name__, AsyncDelivery.__name__
    owner = getattr(value, "broker", None)
    message_id = getattr(value, "id", None)
    if owner is not None and isinstance(message_id, str):
        return DeliveryError(
            f"expected a Delivery of this broker ({expected}), got "
            f"{kind} {message_id} of {owner!r}: a delivery is settled through the broker "
            "that delivered it (its own ack() and nack() do that)"
        )
    if isinstance(value, (list, tuple, set, frozenset)) or _is_iterator(value):
        return DeliveryError(
            f"expected deliveries, got one {kind}: pass them unpacked, as in "
            "broker.ack(*deliveries)"
        )
    if isinstance(value, (bool, int, float)):
        # nack(d, False) or extend(d, 30): a setting passed where deliveries go.
        return DeliveryError(
            f"expected a Delivery, got {kind} {value_text(value)}: the settings are keywords, "
            "as in "
            "nack(*deliveries, requeue=False, delay=5) or extend(*deliveries, seconds=30)"
        )
    return DeliveryError(f"expected a Delivery, got {kind}")


def _is_iterator(value: object) -> bool:
    """Whether ``value`` is an iterator (a generator, a map...), which ack(...) of a
    generator expression would give."""
    return hasattr(type(value), "__next__") and hasattr(type(value), "__iter__")


def _settled_before(delivery: AsyncDelivery) -> AlreadySettled:
    if delivery._settled is SETTLING:
        return AlreadySettled(
            f"delivery {delivery.id} is being acked or nacked already, by a call that "
            "has not returned yet"
        )
    return AlreadySettled(f"delivery {delivery.id} was already acked or nacked")


def _unmark(deliveries: Sequence[AsyncDelivery]) -> None:
    """Those of ``deliveries`` still :data:`SETTLING` are unsettled again."""
    for delivery in deliveries:
        if delivery._settled is SETTLING:
            delivery._settled = False
