"""A delivery: one message handed to one consumer, waiting to be settled."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Any

from brokerkit._message import Message

if TYPE_CHECKING:
    from brokerkit._broker_async import AsyncBroker
    from brokerkit._subscription_async import AsyncSubscription

__all__ = ["SETTLING", "AsyncDelivery"]

_UNDECODED: Any = object()


class _Settling:
    """The value of a delivery's ``_settled`` while an ack or nack of it is on its
    way: truthy, as ``True`` is, so that a second ack or nack meanwhile is refused;
    not ``True``, so that :attr:`AsyncDelivery.settled` says False until the first is
    done."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SETTLING"


SETTLING = _Settling()


class AsyncDelivery:
    """A message as one consumer received it.

    Settle it exactly once: :meth:`ack` when done, :meth:`nack` to hand it back.
    A second ack or nack raises :class:`~brokerkit.AlreadySettled`, and so does one
    made while the first is still on its way (two tasks or threads settling the
    same delivery at once); if the first fails (an error other than
    :class:`~brokerkit.StaleDelivery`), the delivery is unsettled again and may be
    settled again.
    One left unsettled past the visibility timeout is delivered again, with
    :attr:`attempt` one higher.

    :ivar message: the :class:`Message` itself.
    :ivar attempt: 1 on the first delivery, counting up on each redelivery.
    :ivar receipt: the backend's token for this delivery; an ack names it, so a
        late ack cannot settle another consumer's delivery of the same message.
    """

    # __weakref__: on a backend without ACK, its subscription holds it weakly until its
    # hooks end (brokerkit._delivery_drops).
    __slots__ = (
        "__weakref__",
        "_body",
        "_scope",
        "_settled",
        "attempt",
        "message",
        "receipt",
        "subscription",
    )

    def __init__(
        self,
        message: Message,
        *,
        subscription: AsyncSubscription,
        attempt: int = 1,
        receipt: Any = None,
    ) -> None:
        self.message = message
        self.subscription = subscription
        self.attempt = attempt
        self.receipt = receipt
        self._settled: bool | _Settling = False
        self._body = _UNDECODED
        # The delivery hooks' scope while the application holds it (see brokerkit._hooks).
        self._scope: dict[str, Any] | None = None

    @classmethod
    def _first_attempts(
        cls,
        messages: Sequence[Message],
        subscription: AsyncSubscription,
        receipts: Sequence[Any],
    ) -> list[AsyncDelivery]:
        """First deliveries of ``messages``, each exactly as
        ``cls(message, subscription=subscription, attempt=1, receipt=receipt)`` makes
        it: a fetch makes a batch at once, and setting the slots here costs a third of
        a call to ``__init__`` each (tests/test_redis_stream_batch.py compares every
        slot with what ``__init__`` gives)."""
        count = len(messages)
        if count == 1 and len(receipts) == 1:
            # A fetch with prefetch 1: one call to __init__ costs less than the loop.
            return [cls(messages[0], subscription=subscription, receipt=receipts[0])]
        # The instances are made first, in one call (map runs object.__new__ in C).
        deliveries: list[AsyncDelivery] = list(map(object.__new__, repeat(cls, count)))
        for delivery, message, receipt in zip(deliveries, messages, receipts, strict=True):
            delivery.message = message
            delivery.subscription = subscription
            delivery.attempt = 1
            delivery.receipt = receipt
            delivery._settled = False
            delivery._body = _UNDECODED
            delivery._scope = None
        return deliveries

    @property
    def broker(self) -> AsyncBroker:
        """The broker that delivered it, and the only one that can settle it."""
        return self.subscription.broker

    @property
    def id(self) -> str:
        """The message id, the same on every delivery of the message."""
        return self.message.id

    @property
    def topic(self) -> str:
        """The concrete topic the message was published to (even for a pattern)."""
        return self.message.topic

    @property
    def body(self) -> Any:
        """The body as published: bytes, str, or the serializer's decoding."""
        if self._body is _UNDECODED:
            self._body = self.message.body
        return self._body

    @property
    def payload(self) -> bytes:
        """The body as bytes on the wire."""
        return self.message.payload

    @property
    def headers(self) -> Mapping[str, str]:
        """The message's headers."""
        return self.message.headers

    @property
    def content_type(self) -> str:
        """The payload's content type."""
        return self.message.content_type

    @property
    def redelivered(self) -> bool:
        """Whether the message was delivered before (to this or another consumer)."""
        return self.attempt > 1

    @property
    def settled(self) -> bool:
        """Whether :meth:`ack` or :meth:`nack` settled it (False while the first is
        still on its way)."""
        return self._settled is True

    async def ack(self) -> None:
        """Mark the message done: it is never delivered again.

        :raises AlreadySettled: it was acked or nacked before, or is being now.
        :raises StaleDelivery: its lease expired and the message went elsewhere.
        """
        await self.broker.ack(self)

    async def nack(
        self, *, requeue: bool = True, delay: float | None = None, reason: str | None = None
    ) -> None:
        """Hand the message back: to be delivered again, or dead-lettered.

        :param requeue: ``True`` to deliver it again (dead-lettered anyway once it
            reaches ``max_deliveries``); ``False`` to dead-letter it now.
        :param delay: redeliver no earlier than this many seconds from now, held by
            the broker (needs :attr:`Capability.DELAY <brokerkit.Capability.DELAY>`).
        :param reason: recorded on the dead letter if this nack dead-letters it.

        See :meth:`Broker.nack <brokerkit.Broker.nack>` for what is raised.
        """
        await self.broker.nack(self, requeue=requeue, delay=delay, reason=reason)

    async def extend(self, seconds: float | None = None) -> None:
        """Renew the lease for ``seconds`` (default: the visibility timeout) from now."""
        await self.broker.extend(self, seconds=seconds)

    def _mark_settled(self) -> None:
        self._settled = True

    def __repr__(self) -> str:
        state = (
            "settled"
            if self._settled is True
            else "settling"
            if self._settled is SETTLING
            else "unsettled"
        )
        name = type(self).__name__
        return f"<{name} id={self.id} topic={self.topic!r} attempt={self.attempt} {state}>"
