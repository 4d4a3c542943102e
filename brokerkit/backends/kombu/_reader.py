"""One subscription's side of AMQP: its channel, its leases, and how it pulls.

A reader pulls with ``basic.get`` while its queue has messages, so that an idle
subscription is never handed a message it did not ask for. When the queue is empty
and the caller is willing to wait, it registers a consumer (``basic.qos`` = the
prefetch, then ``basic.consume``) and keeps it while the subscription is being read:
the next message is pushed to it without a ``basic.get``. The consumer is cancelled
when the subscription closes, when the deliveries it holds fill its qos (only
``basic.get`` can then bring another), and by the reaper once one of its leases runs
out (a reader that stopped reading gives back what it was pushed).

Every delivery is a *lease*, from the moment it is handed to the caller. The broker's
reaper hands it back (``basic.reject`` with requeue) once the visibility timeout passes
unsettled, and a settle after that raises StaleDelivery without touching the server
(whose delivery tag would no longer be valid). A lease also ends with its channel: a
connection found lost, or a channel RabbitMQ closed, took its deliveries back to the
queue, and what the subscription had fetched from it but not handed out yet is
dropped from its buffer (:meth:`Reader.forget_buffered`, as soon as the loss is
found: see :mod:`._dropped`).

A pushed delivery waiting in the inbox was handed to nobody yet: its clock is the
subscription's. It starts at its arrival and starts again whenever the subscription
shows it is alive (it is read, or renews a delivery it holds), so a subscription whose
holder renews what it holds keeps what was pushed to it meanwhile, and one that
stopped reading and renewing gives it back after a visibility timeout. All methods
are called with the link's lock held (but :meth:`Reader.forget_buffered`, which the
reaper also calls without it).
"""

from __future__ import annotations

import collections
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from brokerkit._broker import Broker
from brokerkit._delivery import Delivery
from brokerkit._subscription import Subscription
from brokerkit.backends.kombu._envelope import attempt_of, decode
from brokerkit.backends.kombu._link import Link
from brokerkit.backends.kombu._server_close import _watch_close

__all__ = ["Lease", "Reader"]

#: A batch fetch switches from ``basic.get`` to a short-lived consumer when at least
#: this many more messages are wanted and waiting (qos + consume + cancel cost three).
_BURST_FROM = 4
#: The largest ``basic.qos`` prefetch count AMQP carries (an unsigned short): a larger
#: prefetch (brokerkit's batch, valid on every backend) is served with this one.
_MAX_QOS = 65535
#: How long a burst waits for a message RabbitMQ has not pushed yet.
_BURST_QUIET = 0.05


@dataclass(eq=False)
class Lease:
    """One delivery a reader holds: the server's delivery tag on the reader's channel."""

    reader: Reader
    channel: Any
    tag: int
    delivery: Delivery
    deadline: float
    delivered_at: float
    #: The link's :attr:`~Link.generation` when it was delivered.
    generation: int
    #: Its dead letter could not be sent, and that was logged (once per lease).
    refused: bool = False
    #: The reaper handed it back (or dead-lettered it): its lease ran out, whatever
    #: becomes of its channel after (a closed subscription's is closed once it holds
    #: nothing more).
    ran_out: bool = False


class Reader:
    """The AMQP state of one subscription (kept in ``subscription.state``)."""

    def __init__(self, subscription: Subscription, queue: str, visibility_timeout: float) -> None:
        self.subscription = subscription
        self.queue = queue
        self.visibility_timeout = visibility_timeout
        self.channel: Any = None
        self.generation = -1
        #: Deliveries a consumer pushed that no fetch returned yet (see renew_inbox).
        self.inbox: collections.deque[Delivery] = collections.deque()
        #: Unsettled deliveries by delivery tag, on :attr:`channel`.
        self.leases: dict[int, Lease] = {}
        self.consumer_tag: str | None = None
        self.qos = 0
        #: The largest payload handed to the subscription, in bytes (its batch).
        self.largest = 0
        #: The subscription is closed: close the channel once the last lease is settled.
        self.retiring = False
        #: RabbitMQ closed :attr:`channel` on its own (why), found by whichever call
        #: read the close (see :func:`._server_close._watch_close`): py-amqp reopened
        #: it in place, without the consumer and the deliveries, so it is dropped at
        #: its next use.
        self.closed_by_server: str | None = None
        #: Called (with the link's lock held) as soon as :attr:`closed_by_server` is
        #: noted, whichever call read the close: the broker drops from the
        #: subscription's buffer what it fetched on that channel (see :mod:`._dropped`).
        self.on_server_close: Callable[[Reader], None] | None = None

    # -- the channel --------------------------------------------------------------

    def live_channel(self, link: Link) -> Any:
        """The reader's channel, opened anew (and every lease dropped: the server has
        handed those deliveries back) when the connection or the channel was lost."""
        channel = self.channel
        current = channel is not None and self.generation == link.generation
        if not current or not channel.is_open or self.closed_by_server is not None:
            if current and channel.is_open:  # (py-amqp's reopening of a closed one)
                channel.close()
            self.channel = link.channel()
            _watch_close(self, self.channel)
            self.closed_by_server = None
            self.generation = link.generation
            self.leases.clear()
            self.inbox.clear()
            self.consumer_tag = None
            self.qos = 0
        return self.channel

    def reset(self) -> None:
        """Drop the channel (RabbitMQ closed it: it handed back every delivery on it)."""
        channel, self.channel = self.channel, None
        self.leases.clear()
        self.inbox.clear()
        self.consumer_tag = None
        self.qos = 0
        self.closed_by_server = None
        if channel is not None and channel.is_open:
            channel.close()

    def holds(self, lease: Lease, link: Link) -> bool:
        """Whether ``lease`` is still this reader's to settle."""
        return (
            lease.channel is self.channel
            and self.generation == link.generation
            and self.leases.get(lease.tag) is lease
            and lease.channel.is_open
            and self.closed_by_server is None
        )

    def lost(self, lease: Lease, link: Link) -> str | None:
        """Why ``lease`` (not :meth:`holds`) went with its channel: ``"connection"``
        (found lost since), ``"channel"`` (RabbitMQ closed it); None if the channel
        lives on, or the reaper handed the delivery back (its lease ran out) before
        its channel went."""
        if lease.ran_out and lease.generation == link.generation:
            return None
        if lease.generation != link.generation:
            return "connection"
        if (
            lease.channel is not self.channel
            or not lease.channel.is_open
            or self.closed_by_server is not None
        ):
            return "channel"
        return None

    def confirm(self) -> None:
        """One round trip on the channel: ``basic.qos`` with the values it has.
        RabbitMQ handles a channel's frames in order, so once it answers, every ack
        and reject sent before it on the channel was taken. A write into a connection
        the network cut may succeed all the same: only the answer tells."""
        self.channel.basic_qos(0, self.qos, False)

    def forget_buffered(self, link: Link) -> tuple[list[Any], str | None]:
        """Take out of the subscription's buffer (fetched, not handed out yet) the
        deliveries whose lease this reader no longer holds: their channel is gone
        (RabbitMQ has them back), or the reaper handed them back. Each is marked
        settled here, nothing sent. Safe from any thread, with the link's lock or
        without it; a delivery whose lease is held stays.

        :returns: those taken, as the application would have received them (under
            brokerkit.aio the thread adapter's asyncio deliveries, from the asyncio
            subscription's buffer: see :meth:`_Twin.take_buffered
            <brokerkit.aio._threaded._Twin.take_buffered>`); and why the first was
            void, as :meth:`lost` says (None: its lease ran out). A receive in
            another thread pops the buffer without a lock: one it takes meanwhile is
            handed out, not taken here, and its settle says it is stale.
        """
        why: list[str | None] = []

        def void(delivery: Delivery) -> bool:
            lease = delivery.receipt
            if not isinstance(lease, Lease) or lease.reader is not self:
                return False
            if self.holds(lease, link):
                return False
            if not why:
                why.append(self.lost(lease, link))
            return True

        # The thread adapter's twin of an asyncio subscription says where its
        # deliveries wait (the hook a sync backend uses: see brokerkit.aio._threaded).
        take = getattr(self.subscription, "take_buffered", None)
        taken: list[Any] = take(void) if take is not None else _take(self.subscription, void)
        return taken, (why[0] if why and taken else None)

    def release(self, lease: Lease) -> None:
        """Forget ``lease`` (it was settled or handed back)."""
        self.leases.pop(lease.tag, None)
        if self.inbox and lease.delivery in self.inbox:
            self.inbox.remove(lease.delivery)

    def close_if_done(self) -> None:
        """Close the channel of a retired reader that holds nothing any more."""
        if self.retiring and not self.leases and self.channel is not None:
            channel, self.channel = self.channel, None
            if channel.is_open:
                channel.close()

    # -- pulling ------------------------------------------------------------------

    def take(self, link: Link, limit: int) -> list[Delivery]:
        """Up to ``limit`` deliveries without waiting: pushed ones first, then
        ``basic.get``; when that says more are waiting than one or two more gets would
        fetch, a short-lived consumer brings the rest of the batch in one go.

        If RabbitMQ closed the channel meanwhile (its close read by the burst's wait,
        and only noted: see :func:`._server_close._watch_close`), it has every
        delivery of it back: what was taken is thrown away (marked settled, handed to
        nobody), not handed out to be refused on its settle and delivered again."""
        channel = self.live_channel(link)  # (a lost one's inbox goes with it)
        taken = self.hand_out(limit)
        while len(taken) < limit:
            raw = channel.basic_get(self.queue, no_ack=False)
            if raw is None:
                break
            taken.append(self._lease(channel, raw).delivery)
            waiting = int(raw.delivery_info.get("message_count") or 0)
            wanted = min(limit - len(taken), waiting, _MAX_QOS)
            if wanted >= _BURST_FROM:
                self._burst(link, channel, wanted)
                taken += self.hand_out(limit - len(taken))
                break
        if self.closed_by_server is not None:
            # (its leases and inbox go at the channel's next use: live_channel)
            Broker._mark(taken)
            return []
        return taken

    def _burst(self, link: Link, channel: Any, wanted: int) -> None:
        """Bring ``wanted`` messages that are known to be waiting into the inbox: a
        consumer with ``basic.qos(wanted)``, cancelled once they came (or once the
        queue went quiet: another consumer may have taken some)."""
        if self.qos != wanted:
            channel.basic_qos(0, wanted, False)
            self.qos = wanted
        tag = channel.basic_consume(
            self.queue, callback=_arrival(self, channel), on_cancel=_cancelled(self)
        )
        try:
            while len(self.inbox) < wanted:
                if not link.drain(_BURST_QUIET):
                    break
        finally:
            channel.basic_cancel(tag)

    def saturated(self) -> bool:
        """Whether the deliveries it handed out and holds unsettled fill its consumer's
        ``basic.qos``, so that the server will push it nothing more."""
        return len(self.leases) - len(self.inbox) >= self.qos

    def misfit(self, limit: int) -> bool:
        """Whether its consumer was registered with a ``basic.qos`` other than a fetch
        of ``limit`` would register now: a subscription's batch changes with
        ``prefetch_bytes`` (one message until it has seen one, then as many as fit at
        the largest size seen). RabbitMQ keeps a consumer's prefetch for its life, so
        one registered for a bigger batch would go on being pushed that many (messages
        held from the group's other members, in this process's memory), and one for a
        smaller batch one at a time: it is cancelled (see :meth:`handed`), and the next
        fetch that waits registers anew (:meth:`listen`)."""
        return self.consumer_tag is not None and self.qos != min(limit, _MAX_QOS)

    def handed(self, link: Link, taken: list[Delivery]) -> None:
        """A fetch hands ``taken`` to the subscription: cancel the consumer now if the
        subscription's next batch, with these payloads seen, is not its qos any more
        (see :meth:`misfit`), before RabbitMQ pushes it more of them."""
        for delivery in taken:
            self.largest = max(self.largest, len(delivery.payload))
        if self.misfit(self.next_batch()):
            self.stop_waiting(link)

    def next_batch(self) -> int:
        """How many messages the subscription's next fetch asks for (as
        :class:`~brokerkit.Subscription` reckons it): its ``prefetch``, and with
        ``prefetch_bytes`` no more than fit at the largest payload it was handed (one
        before any)."""
        subscription = self.subscription
        budget = subscription.prefetch_bytes
        if budget is None:
            return subscription.prefetch
        if not self.largest:
            return 1
        return max(1, min(subscription.prefetch, budget // self.largest))

    def hand_out(self, limit: int) -> list[Delivery]:
        """Up to ``limit`` pushed deliveries from the inbox; their leases start now (and
        the clock of those left in it starts again: the subscription is being read)."""
        taken: list[Delivery] = []
        now = time.monotonic()
        while self.inbox and len(taken) < limit:
            delivery = self.inbox.popleft()
            lease: Lease = delivery.receipt
            lease.deadline, lease.delivered_at = now + self.visibility_timeout, now
            taken.append(delivery)
        self.renew_inbox()
        return taken

    def keep_unread(self, deliveries: list[Delivery], link: Link) -> list[Delivery]:
        """Put back in the inbox those of ``deliveries`` (fetched for this reader's
        subscription, never handed to the application: what a receive cut off by a
        timeout or a cancellation fetched, a worker's delivery it never began) that
        it still holds, so that the subscription's next fetch hands them out again:
        no ``basic.reject``, so no attempt counted (the quorum queue counts every
        requeue in ``x-delivery-count``) and no message moved behind those RabbitMQ
        pushed since (ORDERED). The inbox stays in delivery-tag order, which is the
        order RabbitMQ delivered them in on the channel, whatever order they come
        back in. Each comes back as a new delivery of the same lease (the one handed
        back is settled, as a hand-back leaves it), and its clock starts again, as
        the inbox's does when the subscription is read.

        Kept only while the subscription is open and not closing: what a closing one
        hands back goes back to the queue (see the broker's ``_unsubscribe``, which
        hands back the inbox too). They stay unacked on their channel (RabbitMQ's
        ``basic.qos`` counts those it pushed; the next fetch hands the inbox out
        before it takes more), so they hold no more of the queue than the
        subscription's prefetch did.

        :returns: those kept; the others are the caller's to hand back."""
        kept: list[Delivery] = []
        if self.retiring or self.subscription.closed:
            return kept
        for delivery in deliveries:
            lease = delivery.receipt
            if not isinstance(lease, Lease) or lease.reader is not self:
                continue
            if lease.ran_out or lease.delivery is not delivery or not self.holds(lease, link):
                continue
            lease.delivery = Delivery(
                delivery.message,
                subscription=delivery.subscription,
                attempt=delivery.attempt,
                receipt=lease,
            )
            self.inbox.append(lease.delivery)
            kept.append(delivery)
        if kept:
            ordered = sorted(self.inbox, key=lambda d: d.receipt.tag)
            self.inbox.clear()
            self.inbox.extend(ordered)
            self.renew_inbox()
        return kept

    def renew_inbox(self) -> None:
        """Start the clock of the deliveries waiting in the inbox again, for a
        visibility timeout (never shortening it): the subscription showed that it is
        alive, so what was pushed to it is not handed back while it holds it."""
        deadline = time.monotonic() + self.visibility_timeout
        for delivery in self.inbox:
            lease: Lease = delivery.receipt
            lease.deadline = max(lease.deadline, deadline)

    def listen(self, link: Link, limit: int) -> None:
        """Register as a consumer (if it is not one already): what RabbitMQ pushes goes
        to the inbox, as any call reads it. The fetch then waits for the socket without
        the link's lock (:meth:`Link.await_frames`), and reads under it.

        The consumer stays registered after the fetch, so that a subscription being
        read in a loop is pushed its next message (up to ``basic.qos`` = its prefetch)
        without a ``basic.get``, ``basic.consume`` and ``basic.cancel`` each time:
        on a quorum queue each of those is a Raft command. It is cancelled when the
        subscription closes, and by the reaper when one of the reader's leases runs
        out (a hung or idle reader gives back what it was pushed but never took)."""
        channel = self.live_channel(link)
        if self.consumer_tag is None:
            qos = min(limit, _MAX_QOS)
            if self.qos != qos:
                channel.basic_qos(0, qos, False)
                self.qos = qos
            arrived = _arrival(self, channel)
            self.consumer_tag = channel.basic_consume(
                self.queue, callback=arrived, on_cancel=_cancelled(self)
            )

    def stop_waiting(self, link: Link) -> None:
        """Cancel the consumer :meth:`listen` registered; what it was sent until the
        server confirmed lands in the inbox."""
        tag, self.consumer_tag = self.consumer_tag, None
        channel = self.channel
        current = channel is not None and self.generation == link.generation
        if tag is not None and current and channel.is_open:
            channel.basic_cancel(tag)

    def _cancelled(self, tag: str) -> None:
        """RabbitMQ cancelled the consumer ``tag`` (its queue was deleted): it is gone.
        The next fetch pulls with ``basic.get``, which finds the queue missing."""
        if self.consumer_tag == tag:
            self.consumer_tag = None

    def _arrived(self, channel: Any, raw: Any) -> None:
        if channel is self.channel:
            self.inbox.append(self._lease(channel, raw).delivery)
        else:  # a channel the reader no longer uses: leave it to the server
            channel.basic_reject(raw.delivery_tag, requeue=True)

    def _lease(self, channel: Any, raw: Any) -> Lease:
        info = raw.delivery_info
        tag = int(info["delivery_tag"])
        message = decode(self.subscription.topic, raw.body, raw.properties, raw.headers)
        attempt = attempt_of(raw.headers, bool(info.get("redelivered")))
        delivery = Delivery(message, subscription=self.subscription, attempt=attempt)
        now = time.monotonic()
        deadline = now + self.visibility_timeout
        lease = Lease(self, channel, tag, delivery, deadline, now, self.generation)
        delivery.receipt = lease
        self.leases[tag] = lease
        return lease


def _take(subscription: Subscription, void: Callable[[Delivery], bool]) -> list[Delivery]:
    """Take the deliveries ``void`` says out of ``subscription``'s buffer, each one
    once (one a receive popped meanwhile is left to it), marked settled here."""
    buffer = subscription._buffer
    taken = []
    for delivery in [d for d in list(buffer) if void(d)]:
        try:
            buffer.remove(delivery)
        except ValueError:  # handed out meanwhile
            continue
        taken.append(delivery)
    Broker._mark(taken)
    return taken


def _cancelled(reader: Reader) -> Callable[[str], None]:
    """The ``on_cancel`` callback of ``reader``'s consumers (held weakly, as
    :func:`_arrival` holds it): RabbitMQ cancelled one (its queue was deleted). Without
    one py-amqp raises ConsumerCancelled, a connection error, which dropped the whole
    reading connection and every lease of the broker's other subscriptions with it."""
    ref = weakref.ref(reader)

    def cancelled(tag: str) -> None:
        owner = ref()
        if owner is not None:
            owner._cancelled(tag)

    return cancelled


def _arrival(reader: Reader, channel: Any) -> Callable[[Any], None]:
    """The consumer callback of ``reader`` on ``channel``. It holds the reader weakly:
    the channel belongs to the connection, which outlives a broker dropped unclosed
    until its finalizer closes it, and must not keep that broker alive through the
    reader's subscription. A delivery for a reader that is gone goes back."""
    ref = weakref.ref(reader)

    def arrived(raw: Any) -> None:
        owner = ref()
        if owner is not None:
            owner._arrived(channel, raw)
        else:
            channel.basic_reject(raw.delivery_tag, requeue=True)

    return arrived
