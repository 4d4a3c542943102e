"""Settling on kombu+amqp: ack, nack and extend, with the round trip that makes sure
RabbitMQ took an ack or nack (neither has an answer in AMQP), and the dead-lettering
and requeueing they do; a mixin of :class:`~brokerkit.backends.kombu.amqp.KombuAMQPBroker`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from brokerkit._delivery import Delivery
from brokerkit._logging import subscription_fields
from brokerkit._message import Message
from brokerkit.backends.kombu._blocked import PublishTimeout, keeping_alive
from brokerkit.backends.kombu._dropped import DroppedBuffers
from brokerkit.backends.kombu._link import ConnectionLost, Link
from brokerkit.backends.kombu._options import KombuAMQPOptions
from brokerkit.backends.kombu._publish import Refused, fit_reason, over_frame
from brokerkit.backends.kombu._reader import Lease, Reader
from brokerkit.backends.kombu._transaction import CommitUnknown, send_transacted
from brokerkit.exceptions import BrokerError, InvalidMessage, StaleDelivery

__all__ = ["AMQPSettling"]

log = logging.getLogger("brokerkit.kombu")

#: On a dead letter sent without the message's own headers (they did not fit in one
#: frame with the dead-letter headers): how many were dropped.
DROPPED_HEADER = "x-dead-letter-headers-dropped"


class AMQPSettling:
    """The settling path of :class:`~brokerkit.backends.kombu.amqp.KombuAMQPBroker`."""

    if TYPE_CHECKING:
        options: KombuAMQPOptions
        _link: Link
        _readers: set[Reader]
        _state_lock: threading.Lock
        _dropped: DroppedBuffers

        def _reading(self) -> Link: ...

        def _retire_if_done(self, reader: Reader) -> None: ...

        def dead_letter_topic(self, topic: str) -> str: ...

    def _ack(self, deliveries: Sequence[Delivery]) -> None:
        def ack(lease: Lease) -> None:
            lease.channel.basic_ack(lease.tag)
            lease.reader.release(lease)

        self._settle(deliveries, ack)

    def _nack(self, deliveries: Sequence[Delivery], requeue: bool) -> None:
        self._nack_with(deliveries, requeue, None, None)

    def _nack_with(
        self,
        deliveries: Sequence[Delivery],
        requeue: bool,
        delay: float | None,
        reason: str | None,
    ) -> None:
        """A nack that records ``reason`` on a dead letter (no DELAY: ``delay`` is
        never given)."""
        self._settle(deliveries, functools.partial(self._give_back, requeue=requeue, reason=reason))

    def _settle(self, deliveries: Sequence[Delivery], settle: Callable[[Lease], None]) -> None:
        """Run ``settle`` (a ``basic.ack`` or ``basic.reject``, or a dead letter) on
        the lease of each delivery still held, then make sure RabbitMQ took them.

        Neither ack nor reject has an answer in AMQP, and a write into a connection the
        network cut may succeed: so what the server already sent (an end of stream, a
        ``connection.close``) is taken in first, and after the settles one round trip
        on each channel they went out on (:meth:`Reader.confirm`) says they arrived.
        It does not reconnect: every lease of a lost connection went with it.

        :raises StaleDelivery: some were no longer held (their lease ran out, or went
            with their channel); the rest were settled. If the connection was found
            lost, or RabbitMQ closed a channel, before the round trips answered: all
            of them (none is known settled, and RabbitMQ hands back every unsettled
            delivery of a closed channel).
        """
        link = self._reading()
        stale: list[Delivery] = []
        why: list[str] = []  # why some are stale, if their channel is gone
        confirmed: list[bool] = []
        channel_closed: list[bool] = []

        def run() -> None:
            link.take_in()
            readers: dict[Reader, None] = {}
            for delivery in deliveries:
                lease: Lease = delivery.receipt
                if not lease.reader.holds(lease, link):
                    stale.append(delivery)
                    lost = lease.reader.lost(lease, link)
                    if lost is not None and not why:
                        why.append(lost)
                    continue
                readers[lease.reader] = None
                settle(lease)
            for reader in readers:
                reader.confirm()
            confirmed.append(True)
            for reader in readers:
                self._retire_if_done(reader)

        def reset() -> None:
            # py-amqp reopened the closed channel in place, which one is not told:
            # those of this batch are closed, their deliveries go back.
            channel_closed.append(True)
            readers = {d.receipt.reader for d in deliveries}
            for reader in readers:
                reader.reset()
            self._dropped.drop(readers, link)  # (what they buffered went too)

        try:
            link.call(run, on_channel_error=reset, reconnect=False)
        except ConnectionLost:
            self._forget_buffered(link)
            if not confirmed:
                raise _gone_with_channel(deliveries, "connection", link) from None
            why[:] = ["connection"]  # (lost once they were settled)
        except BrokerError as exc:
            self._dropped.report()
            if not channel_closed or confirmed:
                raise
            raise _gone_with_channel(deliveries, "channel", link, str(exc)) from None
        if stale and why:
            self._forget_buffered(link)
            raise _gone_with_channel(stale, why[0], link)
        if stale:
            raise StaleDelivery(stale)

    def _forget_buffered(self, link: Link) -> None:
        """Drop from the subscriptions' buffers what they fetched and no longer hold a
        lease of (see :class:`DroppedBuffers`), and report what was dropped; call
        holding no lock."""
        with self._state_lock:
            readers = list(self._readers)
        self._dropped.drop(readers, link)
        self._dropped.report()

    def _give_back(
        self,
        lease: Lease,
        *,
        requeue: bool,
        reason: str | None = None,
        unasked: bool = False,
    ) -> None:
        """Requeue the delivery of ``lease``, or dead-letter it (for ``reason``, or
        the usual one: not ``requeue``, or its last allowed attempt; ``unasked``: see
        :meth:`_dead_letter`); call while it is held."""
        attempt = lease.delivery.attempt
        limit = self.options.max_deliveries
        if not requeue:
            self._dead_letter(lease, reason or "rejected", attempt, unasked)
        elif limit is not None and attempt >= limit:
            self._dead_letter(lease, reason or "max_deliveries", attempt, unasked)
        else:
            lease.channel.basic_reject(lease.tag, requeue=True)
            lease.reader.release(lease)

    def _requeue_or_dead_letter(
        self,
        deliveries: Sequence[Delivery],
        *,
        requeue: bool,
        unasked: bool = False,
    ) -> None:
        """Requeue (or dead-letter, on their last attempt; ``unasked``: see
        :meth:`_dead_letter`) ``deliveries`` still held, without checking that RabbitMQ
        took it: for hand-backs, which a lost connection makes too."""
        link = self._reading()
        for delivery in deliveries:
            lease: Lease = delivery.receipt
            if lease.reader.holds(lease, link):
                give_back = functools.partial(
                    self._give_back, lease, requeue=requeue, unasked=unasked
                )
                self._isolated(lease, give_back)
                self._retire_if_done(lease.reader)

    def _isolated(self, lease: Lease, settle: Callable[[], None]) -> bool:
        """Run ``settle`` (a hand-back or dead letter of ``lease``, by the reaper or a
        fetch) so that a message whose dead letter is refused does not stop the
        others: log it (once per lease), keep the lease, and return False."""
        try:
            settle()
        except InvalidMessage as exc:
            if not lease.refused:
                lease.refused = True
                log.warning(
                    "could not dead-letter message %s of %r: %s",
                    lease.delivery.id,
                    lease.reader.subscription.topic,
                    exc,
                    extra=subscription_fields(lease.reader.subscription, [lease.delivery]),
                )
            return False
        return True

    def _dead_letter(
        self,
        lease: Lease,
        reason: str,
        deliveries: int,
        unasked: bool = False,
    ) -> None:
        """Republish the message to the dead-letter topic, confirmed, then ack it.

        One whose dead letter does not fit in one frame (a reason longer than the
        ``max_deliveries`` a publish keeps room for, as a Worker's handler error; a
        message another program published, its headers near the frame's limit) has
        its reason cut to fit, ending in ``[truncated]`` (:func:`fit_reason`); one
        whose own headers leave no room for even that is
        dead-lettered without its own headers, ``x-dead-letter-headers-dropped``
        saying how many, with a WARNING. One whose dead letter cannot be published at
        all (even so; or refused for another reason, as RabbitMQ's
        ``max_message_size``, or a ``basic.nack`` from a full dead-letter queue that
        rejects publishes) is rejected without requeue, with a WARNING, which RabbitMQ
        dead-letters to the same topic itself.

        One nobody asked for (``unasked``: the reaper's; a receive's, of a message
        past ``max_deliveries``; a closing subscription's hand-back) is rejected so
        too when its publish runs out of ``publish_timeout`` (a memory or disk
        alarm), and without trying while a publish of the link did so within the
        last :data:`~._link.ALARM_QUIET` seconds, none confirmed since: each try
        would wait up to twice ``publish_timeout`` (the publish and its round trip,
        then the commit) holding the reading connection. Otherwise the
        timeout is raised (the message stays held). Either way it is dead-lettered
        once: the dead letter is a transaction committed only once RabbitMQ has read
        it (:func:`~._transaction.send_transacted`), and one that timed out before its
        commit went out is not stored when RabbitMQ reads it after the alarm.

        Not so one whose commit went out and was not answered, within a
        ``publish_timeout`` of its own (a slow disk) or before the connection was lost
        (:class:`~._transaction.CommitUnknown`): it may be stored, and is not sent again.
        A nack raises it, the message still held (nacked again, it may be stored
        twice). One nobody asked for is rejected without requeue, with a WARNING, for
        RabbitMQ to dead-letter it itself: the dead-letter topic then holds it once or
        twice (the copy whose commit went out, if stored, and RabbitMQ's), never more
        for this dead-lettering, and lost only where RabbitMQ's own dead-lettering
        (at most once, on quorum queues) drops it (see docs/backends/kombu.md).
        (Handed back instead, it came back past
        ``max_deliveries`` to the same fate, or to one more copy each round while each
        commit's connection was lost.)
        """
        message = lease.delivery.message
        topic = lease.reader.subscription.topic
        dead_topic = self.dead_letter_topic(topic)
        added = {
            "x-dead-letter-reason": reason,
            "x-original-topic": topic,
            "x-deliveries": str(deliveries),
        }
        dead = dataclasses.replace(message, topic=dead_topic, headers={**message.headers, **added})
        publishing = self._link

        def send(letter: Message) -> None:
            letter = fit_reason(publishing, letter, "x-dead-letter-reason")
            publishing.ensure_topic(topic)
            send_transacted(publishing, topic, publishing.names.exchange(dead_topic), [letter])

        def rejected(said: str, why: BrokerError) -> None:
            """Log ``said`` (of message id, topic, ``why``, dead-letter topic), then
            reject the message for RabbitMQ to dead-letter it."""
            log.warning(
                said,
                message.id,
                topic,
                why,
                dead_topic,
                extra=subscription_fields(lease.reader.subscription, [lease.delivery]),
            )
            lease.channel.basic_reject(lease.tag, requeue=False)
            lease.reader.release(lease)

        def refused(why: BrokerError) -> None:
            rejected(
                "message %s of %r could not be dead-lettered (%s): rejected without "
                "requeue, for RabbitMQ to dead-letter it to %r itself",
                why,
            )

        def commit_unknown(why: CommitUnknown) -> None:
            rejected(
                "message %s of %r: its dead letter may have been stored (%s): rejected "
                "without requeue, for RabbitMQ to dead-letter it to %r itself, which may "
                "then hold it twice",
                why,
            )

        def sent(letter: Message) -> bool:
            """Publish ``letter``; False once the message was settled otherwise."""
            try:
                # Lock order: the reading link's lock (held by the caller), then this
                # one's; its heartbeats are this thread's to send meanwhile.
                with keeping_alive(self._reading().heartbeat):
                    publishing.call(functools.partial(send, letter))
            except CommitUnknown as exc:
                if not unasked:
                    exc.args = (
                        f"{exc}. Message {message.id} is still held: nack it again to have "
                        f"it dead-lettered at least once (it may then be in {dead_topic!r} "
                        "twice, with its id)",
                    )
                    raise
                commit_unknown(exc)
                return False
            except PublishTimeout as exc:
                if not unasked:
                    raise
                refused(exc)
                return False
            except Refused as exc:  # (a full dead-letter queue that rejects publishes)
                refused(exc)
                return False
            return True

        if unasked and (alarm := publishing.recent_timeout()) is not None:
            refused(alarm)
            return
        try:
            if not sent(dead):
                return
        except InvalidMessage as exc:
            if not over_frame(exc):
                refused(exc)
                return
            dropped = len([k for k in message.headers if k not in added])
            stripped = dataclasses.replace(dead, headers={**added, DROPPED_HEADER: str(dropped)})
            try:
                if not sent(stripped):
                    return
            except InvalidMessage as again:
                refused(again)
                return
            log.warning(
                "message %s of %r was dead-lettered to %r with its %d header(s) dropped "
                "(%s: %d): the dead letter's headers did not fit in one frame (%s)",
                message.id,
                topic,
                dead_topic,
                dropped,
                DROPPED_HEADER,
                dropped,
                exc,
                extra=subscription_fields(lease.reader.subscription, [lease.delivery]),
            )
        lease.channel.basic_ack(lease.tag)
        lease.reader.release(lease)

    def _extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        link = self._reading()

        def extend() -> tuple[list[Delivery], str | None]:
            link.take_in()  # (a connection lost meanwhile took the leases with it)
            stale = []
            why: str | None = None
            renewing: set[Reader] = set()
            deadline = time.monotonic() + seconds
            for delivery in deliveries:
                lease: Lease = delivery.receipt
                if lease.reader.holds(lease, link):
                    lease.deadline = deadline
                    renewing.add(lease.reader)
                else:
                    stale.append(delivery)
                    why = why or lease.reader.lost(lease, link)
            # What was pushed to a subscription that renews its leases is its too.
            for reader in renewing:
                reader.renew_inbox()
            return stale, why

        try:
            stale, why = link.call(extend, reconnect=False)
        except ConnectionLost:
            self._forget_buffered(link)
            raise _gone_with_channel(deliveries, "connection", link, renewing=True) from None
        if why is not None:
            raise _gone_with_channel(stale, why, link, renewing=True)
        if stale:
            raise StaleDelivery(stale)


def _gone_with_channel(
    deliveries: Sequence[Delivery],
    why: str,
    link: Link,
    detail: str = "",
    *,
    renewing: bool = False,
) -> StaleDelivery:
    """StaleDelivery for ``deliveries`` whose lease went with their channel, saying
    how (``why``: ``"connection"`` or ``"channel"``), not that a lease ran out; for an
    ack or nack, or an extend (``renewing``)."""
    error = StaleDelivery(deliveries)
    ids = ", ".join(d.id for d in deliveries[:5])
    if len(deliveries) > 5:
        ids += f" and {len(deliveries) - 5} more"
    if why == "connection":
        cause = f"the connection to {link.url.render()} was lost"
    else:
        cause = f"RabbitMQ on {link.url.render()} closed the channel"
        if detail:
            cause += f" ({detail})"
    back = (
        "RabbitMQ hands back every unsettled delivery of a closed channel, so it is "
        "delivered again (to this or another consumer)"
    )
    if renewing:
        error.args = (f"{cause}, and the lease of message {ids} with it: {back}",)
    else:
        error.args = (
            f"{cause} before RabbitMQ took the ack or nack of message {ids}: {back} "
            "unless the settle reached it first",
        )
    return error
