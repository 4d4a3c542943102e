"""The settling of a NATS broker's deliveries: ``+ACK``, ``-NAK``, ``+WPI`` (a lease
renewed) and dead-lettering (republished to the dead-letter topic, ``<topic>.dlq``
or, at the last level, ``<topic>`` itself, then ``+TERM``), each
sent only while its lease holds (:func:`~brokerkit.backends.nats._leases.last_send`).

:class:`NatsSettling` is the part of :class:`~brokerkit.backends.nats.broker.AsyncNatsBroker`
that does it, over the connection, the leases and the stream the broker keeps.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from brokerkit._broker_async import AsyncBroker
from brokerkit._delivery_async import AsyncDelivery
from brokerkit.backends.nats._client import NatsClient, Request
from brokerkit.backends.nats._leases import (
    Lease,
    Leases,
    deliveries_of,
    last_send,
    made_again,
)
from brokerkit.backends.nats._options import NatsOptions
from brokerkit.backends.nats._wire import MAX_HEADER_BYTES, dead_letter_headers, subject_for
from brokerkit.exceptions import BrokerError, StaleDelivery

__all__ = ["NatsSettling", "NoStream"]


class NoStream(BrokerError):
    """Internal: no JetStream stream captures the subject (the stream was deleted):
    what a store (``_store``) raises."""


class NatsSettling(AsyncBroker):
    """Ack, nack, extend and dead-letter for :class:`AsyncNatsBroker`, which sets the
    attributes below and stores the dead letters (``_store``)."""

    options: NatsOptions
    _client: NatsClient
    _leases: Leases
    _stream: str

    if TYPE_CHECKING:

        async def _store(
            self,
            requests: Sequence[Request],
            what: str,
            until: Sequence[Callable[[], float]] | None = None,
        ) -> list[bool]: ...

    async def _send(self, leases: Sequence[Lease], verb: bytes, what: str) -> list[Lease]:
        """Send ``verb`` for each lease the server still knows, only while the lease
        holds (:func:`last_send`: never buffered through an outage, nor sent again,
        past it); the others, which are lost (each will be delivered again): see
        :meth:`Leases.forgotten`, one not answered before its lease ran out (given
        up: the server may have applied it, its answer lost), one its group's
        consumer, asked when a first try went unanswered, does not hold
        (:meth:`_unheld`), and a request nobody took (status 503: the group's
        consumer was deleted)."""
        lost = await self._leases.forgotten(leases)
        sent = [lease for lease in leases if lease not in lost]
        if sent:
            replies = await self._client.settle_all(
                [(lease.reply, verb, None) for lease in sent],
                what,
                [functools.partial(last_send, lease) for lease in sent],
                unanswered=lambda left, by: self._unheld([sent[index] for index in left], by),
            )
            lost += [
                lease
                for lease, reply in zip(sent, replies, strict=True)
                if reply is None or (reply.headers and reply.headers.get("Status") == "503")
            ]
        for lease in leases if verb != b"+WPI" else lost:
            self._leases.discard(lease)
        return lost

    async def _unheld(self, leases: Sequence[Lease], by: float) -> list[int]:
        """The indices (in ``leases``, whose settle a first try left unanswered) of
        those their group's consumer does not hold, as it says (asked by the monotonic
        time ``by``, and while they hold): it delivered nothing past their stream
        sequence, or it was made again since they were known to be its
        (:func:`~brokerkit.backends.nats._leases.made_again`). A consumer another
        program made again before this broker's first check of the group answers no
        ``+ACK`` (nor ``+TERM``) of what the one before delivered: without this, the
        settle was sent again until ``reconnect_timeout``. One the consumer could not
        say of is sent again as before."""
        unheld: list[int] = []
        for consumer in dict.fromkeys(lease.consumer for lease in leases):
            group = [index for index, lease in enumerate(leases) if lease.consumer == consumer]
            until = min(by, max(last_send(leases[index]) for index in group))
            try:
                found = await self._leases.delivered(consumer, until)
            except BrokerError:  # (it could not say: sent again)
                continue
            if found is None:
                continue
            delivered, created, source = found
            unheld += [
                index
                for index in group
                if leases[index].seq > delivered or made_again(leases[index], created, source)
            ]
        return unheld

    async def _ack(self, deliveries: Sequence[AsyncDelivery]) -> None:
        live, stale = self._leases.split(deliveries)
        if live:
            stale += deliveries_of(deliveries, await self._send(live, b"+ACK", "ack"))
        if stale:
            raise StaleDelivery(stale)

    async def _nack(self, deliveries: Sequence[AsyncDelivery], requeue: bool) -> None:
        await self._nack_with(deliveries, requeue, None, None)

    async def _nack_with(
        self,
        deliveries: Sequence[AsyncDelivery],
        requeue: bool,
        delay: float | None,
        reason: str | None,
    ) -> None:
        """A nack that records ``reason`` on a dead letter. No DELAY is declared (the
        server cannot hold a delayed publish before 2.12), so ``delay`` is never given."""
        live, stale = self._leases.split(deliveries)
        held = {id(lease) for lease in live}
        limit = self.options.max_deliveries
        requeued: list[Lease] = []
        dead: list[tuple[AsyncDelivery, str, int]] = []
        for delivery in deliveries:
            if id(delivery.receipt) not in held:
                continue
            if not requeue:
                dead.append((delivery, reason or "rejected", delivery.attempt))
            elif limit is not None and delivery.attempt >= limit:
                dead.append((delivery, reason or "max_deliveries", delivery.attempt))
            else:
                requeued.append(delivery.receipt)
        if requeued:
            stale += deliveries_of(deliveries, await self._send(requeued, b"-NAK", "requeue"))
        if dead:
            stale += deliveries_of(deliveries, await self._dead_letter(dead))
        if stale:
            raise StaleDelivery(stale)

    async def _dead_letter(self, dead: Sequence[tuple[AsyncDelivery, str, int]]) -> list[Lease]:
        """Republish to the dead-letter topic (confirmed; a topic of the last level's
        is its own subject), then ``+TERM`` the originals; the leases the server did
        not know (see :meth:`_send`).

        A crash in between leaves the original to be redelivered and dead-lettered
        again; the dead letter's ``Nats-Msg-Id`` makes JetStream store it once. A
        delivery the server forgot is not dead-lettered: it comes again. The dead
        letter keeps the body and headers; its dead-letter headers take the room the
        server's limits leave (:func:`dead_letter_headers`), so that a message stored
        near them is dead-lettered all the same. One whose stream was deleted is lost
        (its lease went with the stream)."""
        lost = await self._leases.forgotten([delivery.receipt for delivery, _, _ in dead])
        now = time.monotonic()
        # (one whose lease ran out meanwhile is not dead-lettered: it comes again)
        lost += [
            d.receipt for d, _, _ in dead if d.receipt not in lost and now >= last_send(d.receipt)
        ]
        dead = [entry for entry in dead if entry[0].receipt not in lost]
        max_payload = (await self._client.connection()).max_payload if dead else 0
        requests: list[Request] = []
        for delivery, reason, count in dead:
            message = delivery.message
            lease: Lease = delivery.receipt
            topic = self.dead_letter_topic(message.topic)
            headers = dead_letter_headers(
                message,
                topic,
                reason,
                count,
                # The group's consumer and the stream sequence name this dead-lettering.
                msg_id=f"dlq:{lease.consumer}:{lease.seq}",
                stored=lease.stored,
                room=min(MAX_HEADER_BYTES, max_payload - len(message.payload)),
            )
            requests.append((subject_for(self._stream, topic), message.payload, headers))
        if dead:
            # Stored only while the lease holds: a dead letter of a message that comes
            # again would be a copy (the next dead-lettering, within JetStream's
            # duplicate window, is stored once all the same).
            try:
                stored = await self._store(
                    requests,
                    "dead-letter",
                    [functools.partial(last_send, d.receipt) for d, _, _ in dead],
                )
            except NoStream:  # (gone with its group's consumer, and their leases)
                stored = [False] * len(dead)
            lost += [d.receipt for (d, _, _), ok in zip(dead, stored, strict=True) if not ok]
            dead = [entry for entry, ok in zip(dead, stored, strict=True) if ok]
        if dead:
            lost += await self._send([d.receipt for d, _, _ in dead], b"+TERM", "dead-letter")
        for lease in lost:
            self._leases.discard(lease)
        return lost

    async def _extend(self, deliveries: Sequence[AsyncDelivery], seconds: float) -> None:
        # +WPI restarts AckWait: the lease runs for the group's ack wait from now,
        # whatever ``seconds`` says; a live broker renews it again in the background.
        live, stale = self._leases.split(deliveries)
        stale += deliveries_of(deliveries, await self._renew(live))
        if stale:
            raise StaleDelivery(stale)

    async def _renew(self, leases: Sequence[Lease]) -> list[Lease]:
        """``+WPI`` each lease; the lost ones (see :meth:`_send`)."""
        if not leases:
            return []
        sent = time.monotonic()
        lost = await self._send(leases, b"+WPI", "extend a lease")
        renewed = {id(lease) for lease in leases} - {id(lease) for lease in lost}
        for lease in leases:
            if id(lease) in renewed:
                lease.deadline = max(lease.deadline, sent + lease.ack_wait)
        return lost
