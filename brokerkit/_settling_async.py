"""Settling deliveries: checking what ``ack``, ``nack`` and ``extend`` were given, and
running a settling primitive between the settlement hooks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from brokerkit._delivery_async import SETTLING, AsyncDelivery
from brokerkit._hooks import RELAY
from brokerkit.exceptions import AlreadySettled, DeliveryError, ReplicationTimeout, StaleDelivery

if TYPE_CHECKING:
    from brokerkit._broker_async import AsyncBroker

__all__ = ["settle", "settleable"]

_NOT_A_SUBSCRIPTION = object()


def settleable(broker: AsyncBroker, deliveries: Sequence[AsyncDelivery]) -> list[AsyncDelivery]:
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
                raise DeliveryError(f"expected a Delivery, got {type(delivery).__name__}")
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
    broker: AsyncBroker,
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
    and :class:`ReplicationTimeout`, which settle), they are unsettled again.

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
    except StaleDelivery as exc:
        broker._mark(deliveries)
        if RELAY.settle:
            RELAY.settled(broker, deliveries, requeue, exc.deliveries, reason=reason)
        raise
    except ReplicationTimeout as exc:
        broker._mark(deliveries)  # applied on the master: settled, if not yet replicated
        if RELAY.settle:  # but not the stale ones, left to another consumer
            RELAY.settled(broker, deliveries, requeue, exc.stale, reason=reason)
        raise
    except BaseException:
        _unmark(deliveries)  # not settled (a cancelled call too): it may be settled again
        raise
    broker._mark(deliveries)
    if RELAY.settle:
        RELAY.settled(broker, deliveries, requeue, reason=reason)


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
