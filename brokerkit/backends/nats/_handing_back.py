"""The hand-back of a NATS broker's deliveries: ``-NAK`` what a closing subscription
fetched and never gave to the caller, and what a pull brought after it gave up waiting
for it (a straggler), each sent only while its lease holds
(:func:`~brokerkit.backends.nats._leases.last_send`), or at once, and never sent
again. What is handed back while its subscription is open (a cancelled receive's
fetch) is kept for that subscription's next receive instead: JetStream cannot
un-deliver a message, and a ``-NAK`` would count an attempt that no handler saw. It
is kept, renewed, for one ack wait at most
(:attr:`~brokerkit.backends.nats._leases.Lease.kept_until`): a subscription nobody
reads any more holds it from the group's other members no longer than that.

:class:`NatsHandingBack` is the part of
:class:`~brokerkit.backends.nats.broker.AsyncNatsBroker` that does it, over the
connection and the leases the broker keeps.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable

from brokerkit._broker_async import AsyncBroker
from brokerkit._delivery_async import AsyncDelivery
from brokerkit._logging import log_fields
from brokerkit.backends.nats._client import CLOSE_WAIT, SHORT_WAIT, NatsClient
from brokerkit.backends.nats._leases import Leases, last_send
from brokerkit.backends.nats._reader import Reader
from brokerkit.exceptions import BrokerError

__all__ = ["NatsHandingBack"]

log = logging.getLogger("brokerkit.nats")

#: Seconds within which a straggler's hand-back is sent, or not at all.
_AT_ONCE = 0.05


class NatsHandingBack(AsyncBroker):
    """Hand-back for :class:`AsyncNatsBroker`, which sets the attributes below."""

    _client: NatsClient
    _leases: Leases
    #: When the broker's close started handing back (monotonic): what it hands
    #: back, and the close itself, end CLOSE_WAIT seconds from then at most.
    _closing_by: float | None

    async def _hand_back(self, deliveries: list[AsyncDelivery]) -> None:
        """What was fetched and never returned: while its subscription (and the broker)
        is open (a receive cancelled, or timed out, while it fetched; a sync receive
        interrupted; a worker's delivery it did not run), kept for that
        subscription's next receive, first in line, no attempt counted (:meth:`_keep`);
        else given back (:meth:`_give_back`). Its lease is renewed while it is kept,
        for one ack wait from when it was kept, or from the subscription's last fetch
        since, at most (:attr:`Lease.kept_until`): past it, it is renewed no more, and
        the message comes again, to any member of the group, when its lease runs out
        (an attempt counted, as for a ``-NAK``). So a subscription that is never read
        again, though open (a draining worker's, which hands back what it did not
        begin and waits for its busy handlers before it closes it), holds it from the
        others for about two ack waits at most."""
        back: list[AsyncDelivery] = []
        for delivery in deliveries:
            subscription = delivery.subscription
            reader = subscription.state
            if self.closed or subscription.closed or not isinstance(reader, Reader):
                back.append(delivery)
            else:
                _keep(reader, delivery)
        self._mark(deliveries)
        if back:
            await self._give_back(back)

    async def _give_back(self, deliveries: list[AsyncDelivery]) -> None:
        """``-NAK`` what was fetched and never returned: another consumer gets it at once.
        Never dead-letters (the caller never saw it), though JetStream counts the attempt.
        Each is sent only while its lease holds (:func:`last_send`)."""
        live, _ = self._leases.split(deliveries)
        self._mark(deliveries)
        await self._nak_quietly(
            [lease.reply for lease in live], [functools.partial(last_send, lease) for lease in live]
        )

    async def _hand_back_stragglers(self, reader: Reader) -> None:
        """Hand back what a pull brought after it gave up waiting for it: leased at a
        time nobody knows, so handed back at once, and only if the connection is up
        (else its lease runs out: AckWait brings it back). A ``-NAK`` that reached the
        server late could only requeue the message from whoever holds it then: a
        duplicate, never a loss; so it is not sent again, nor kept for a reconnection."""
        replies = [msg.reply for msg in reader.stragglers() if msg.reply]
        if replies:
            now = time.monotonic()
            await self._nak_quietly(replies, [lambda: now + _AT_ONCE] * len(replies))

    async def _nak_quietly(self, replies: list[str], until: list[Callable[[], float]]) -> None:
        """``-NAK`` each of ``replies`` before ``until`` (see :meth:`NatsClient.settle_all`),
        waiting :data:`CLOSE_WAIT` seconds for the server at most (within the close,
        what is left of its own; :data:`SHORT_WAIT` for one that left the last request
        unanswered): a hand-back nobody answers is given up, with a warning, its lease
        left to run out, as ``Broker.close`` says."""
        for reply in replies:
            self._leases.pop(reply, None)
        if not replies:
            return
        wait = SHORT_WAIT if self._client.silent else CLOSE_WAIT
        if self.closed:
            if self._closing_by is None:
                self._closing_by = time.monotonic() + CLOSE_WAIT
            wait = min(wait, max(self._closing_by - time.monotonic(), 0.0))
        try:
            answers = await self._client.settle_all(
                [(reply, b"-NAK", None) for reply in replies], "requeue", until, wait=wait
            )
        except BrokerError as exc:
            log.warning(
                "could not hand back %d delivery(ies): %s", len(replies), exc, extra=log_fields()
            )
            return
        unanswered = sum(answer is None for answer in answers)
        if unanswered:
            log.warning(
                "could not hand back %d delivery(ies): NATS at %s did not answer in time; "
                "they come again when their lease runs out",
                unanswered,
                self._client.server,
                extra=log_fields(),
            )


def _keep(reader: Reader, delivery: AsyncDelivery) -> None:
    """Keep ``delivery`` for the next fetch of its subscription (:attr:`Reader.kept`),
    as a fresh delivery of the same lease: the one handed back is marked settled (a
    worker that handed it back may still hold it), the fresh one is what the lease
    names (:attr:`Lease.holder`) and the reader holds, so its lease is renewed, for one
    ack wait at most if no fetch of the subscription comes (:attr:`Lease.kept_until`)."""
    lease = delivery.receipt
    fresh = AsyncDelivery(
        delivery.message,
        subscription=delivery.subscription,
        attempt=delivery.attempt,
        receipt=lease,
    )
    lease.holder = fresh
    lease.kept_until = time.monotonic() + lease.ack_wait  # (see Lease.kept_until)
    reader.kept.append(fresh)
