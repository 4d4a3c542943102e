"""``kombu+amqp://``: RabbitMQ through kombu (py-amqp), with the contract's semantics.

The mapping, in short (the docs page ``backends/kombu`` has the whole table):

* a topic is a durable **fanout exchange** ``<prefix>|<topic>``; a group is a durable
  **quorum queue** ``<prefix>|<topic>|<group>`` bound to it, so the members of a group
  compete for its messages and every group gets every message. Publishing declares
  the topic's default-group queue, so that a message waits for its first consumer.
* publish is ``basic.publish`` under **publisher confirms**: it returns once RabbitMQ
  has taken every message (a batch is sent at once and its confirms awaited together;
  see :mod:`~brokerkit.backends.kombu._publish`).
* a fetch is ``basic.get`` while the queue has messages; on an empty queue it
  registers a consumer with ``basic.qos(prefetch)`` and keeps it while the
  subscription is being read (see :mod:`~brokerkit.backends.kombu._reader`).
* ack, nack(requeue) and the hand-back of unread deliveries are ``basic.ack`` and
  ``basic.reject``; an ack or nack call then makes one round trip on the channel, as
  neither has an answer (a settle into a connection the network cut must not report
  success); a delivery's attempt is 1 + the quorum queue's ``x-delivery-count``.
* the visibility timeout is kept by the broker's own reaper thread (AMQP has none); a
  closed connection hands everything back at once.
* ``max_deliveries`` and dead-lettering are brokerkit's: the message is republished,
  with its dead-letter headers, to the ``<topic>.dlq`` exchange under confirms and then
  acked. Queues also name that exchange as their ``x-dead-letter-exchange``, so what the
  server itself dead-letters (an operator's TTL or delivery-limit policy) lands there too.
* AMQP heartbeats, sent and checked by the reaper, and a socket timeout of two
  heartbeats bound every wait (see :mod:`~brokerkit.backends.kombu._link`). A broker
  dropped unclosed is closed by its finalizer: its reaper holds it weakly.
* inspect counts a topic's queues with passive declares, and purge empties its groups'
  queues (:mod:`~brokerkit.backends.kombu._manage`).

This module is the broker: subscribing, fetching and the reaper's sweep, over the
connections (``_link``), readers (``_reader``), settling and dead-lettering
(``_settle``), publishing (``_publish``) and management (``_manage``) beside it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
import weakref
from collections.abc import Sequence
from typing import ClassVar, NamedTuple

from brokerkit._broker import DEFAULT_GROUP, Broker
from brokerkit._capabilities import Capability
from brokerkit._delivery import Delivery
from brokerkit._inspect import TopicInfo
from brokerkit._message import Message
from brokerkit._options import BrokerOptions
from brokerkit._subscription import Subscription
from brokerkit._url import BrokerURL
from brokerkit.backends.kombu import _manage
from brokerkit.backends.kombu._connection import is_tls
from brokerkit.backends.kombu._drop_hooks import _on_drop, _on_server_close
from brokerkit.backends.kombu._dropped import DroppedBuffers
from brokerkit.backends.kombu._link import Link
from brokerkit.backends.kombu._options import TLS_OPTIONS, KombuAMQPOptions
from brokerkit.backends.kombu._publish import publish
from brokerkit.backends.kombu._reader import Lease, Reader
from brokerkit.backends.kombu._reaper import Reaper, release
from brokerkit.backends.kombu._rebind import Rebinder
from brokerkit.backends.kombu._server_close import closed_on_its_own
from brokerkit.backends.kombu._settle import AMQPSettling
from brokerkit.exceptions import BrokerClosed, BrokerError, ConnectionFailed, InvalidOption

__all__ = ["DeclaredNames", "KombuAMQPBroker"]


#: The longest a receive waits for the socket before it looks again (the broker
#: closing, its own deadline; over TLS, what another read left in the TLS layer).
#: It waits holding no lock (see :mod:`._readable`).
_SLICE = 0.05
#: How many channels RabbitMQ closed on its own one fetch goes on after.
_RECOVERIES = 2


class DeclaredNames(NamedTuple):
    """The exchanges and queues a broker declared (to delete what a test created)."""

    exchanges: frozenset[str]
    queues: frozenset[str]


class KombuAMQPBroker(AMQPSettling, Broker):
    """RabbitMQ (AMQP 0-9-1) through kombu's py-amqp transport."""

    schemes: ClassVar[tuple[str, ...]] = ("kombu+amqp", "kombu+amqps", "kombu+pyamqp")
    capabilities: ClassVar[Capability] = (
        Capability.PERSISTENT
        | Capability.ACK
        | Capability.COMPETING
        | Capability.FANOUT
        | Capability.DEAD_LETTER
        | Capability.ORDERED
    )
    Options: ClassVar[type[BrokerOptions]] = KombuAMQPOptions
    options: KombuAMQPOptions

    def __init__(self, url: BrokerURL, options: BrokerOptions) -> None:
        super().__init__(url, options)
        misplaced = [name for name in TLS_OPTIONS if getattr(self.options, name) is not None]
        if misplaced and not is_tls(url):
            raise InvalidOption(
                f"{', '.join(misplaced)} only apply over TLS: use a kombu+amqps:// URL, or "
                "remove them"
            )
        #: The AMQP ``connection_name`` this broker shows in RabbitMQ's tools.
        self.connection_name = f"brokerkit-{os.getpid()}-{os.urandom(4).hex()}"
        #: Publishing, declarations, inspect and purge.
        self._link = Link(url, self.options, self.connection_name)
        #: Subscriptions, settling and the reaper, on a connection of their own (opened
        #: on the first subscribe) so that a receive waiting on an empty queue never
        #: holds up a publish from another thread.
        self._reading_link: Link | None = None
        #: Both links, for the finalizer (which must not hold this broker).
        self._links: list[Link] = [self._link]
        self._readers: set[Reader] = set()
        self._groups: dict[str, set[str]] = {}
        self._state_lock = threading.Lock()
        #: What the subscriptions' buffers held of a lease gone, until reported.
        self._dropped = DroppedBuffers()
        #: Set by :meth:`_halt`: the broker is closing.
        self._halting = threading.Event()
        #: Binds the subscriptions' queues again (an exchange deleted and redeclared).
        self._rebinder = Rebinder()
        # Sweeps often enough to send a heartbeat every half heartbeat.
        interval = min(max(self.options.visibility_timeout / 5, 0.02), 1.0)
        interval = min(interval, self.options.heartbeat / 4)
        self._reaper = Reaper(self._sweep, interval, f"brokerkit-reaper-{self.connection_name}")
        # Dropped unclosed, the broker takes its connections and reaper with it.
        self._release = weakref.finalize(self, release, self._reaper, self._links)

    def _reading(self) -> Link:
        link = self._reading_link
        if link is None:
            with self._state_lock:
                if self._reading_link is None:
                    self._check_open()  # (a close under way must not open it anew)
                    if self._halting.is_set():
                        raise BrokerClosed(f"the broker {self.url} is closing")
                    name = f"{self.connection_name}/reading"
                    self._reading_link = Link(self.url, self.options, name)
                    self._reading_link.on_drop = _on_drop(weakref.ref(self), self._reading_link)
                    self._links.append(self._reading_link)
                link = self._reading_link
        return link

    @property
    def declared(self) -> DeclaredNames:
        """Every exchange and queue this broker declared (they outlive it: RabbitMQ
        keeps them until someone deletes them)."""
        with self._link.lock:
            return DeclaredNames(
                frozenset(self._link.created_exchanges), frozenset(self._link.created_queues)
            )

    def delete(self, exchanges: frozenset[str], queues: frozenset[str]) -> None:
        """Delete these queues, then these exchanges, named as :attr:`declared` names
        them: only ones this broker declared (under its ``prefix``), and of those only
        the ones nobody uses: a queue with no message and no consumer, an exchange no
        queue is bound to (a name declared here may be a group's queue that other
        processes share: purge first what should go). What is deleted leaves
        :attr:`declared`.

        :raises InvalidOption: one this broker did not declare (nothing was deleted).
        :raises BrokerError: some were kept, in use, or RabbitMQ refused them (they
            stay in :attr:`declared`; the others were deleted).
        """
        _manage.delete_declared(self._link, exchanges, queues)

    # -- publishing ---------------------------------------------------------------

    def _publish(self, topic: str, messages: Sequence[Message]) -> None:
        publish(self._link, topic, messages)

    # -- consuming ----------------------------------------------------------------

    def _subscribe(self, subscription: Subscription) -> None:
        link = self._link
        topic, group = subscription.topic, subscription.group

        def declare() -> str:
            link.check_names(topic, group)  # all of them, before declaring any
            if (dead := _manage.dead_letter_queue(link, topic, group)) is not None:
                return dead  # (reading dead letters declares nothing: see there)
            # Declared anew on every subscribe, not taken as this link remembers it:
            # someone may have deleted the queue since (subscribing again declares it),
            # or its exchange. The rest (the default and dead-letter queues) is
            # declared once per connection, as a publish declares it.
            link.forget_group(topic, group)
            link.ensure_topic(topic)
            return link.ensure_queue(topic, group)

        queue = link.call(declare)
        self._reading()  # connect now, so that an unreachable server fails here
        reader = Reader(subscription, queue, self.options.visibility_timeout)
        reader.on_server_close = _on_server_close(weakref.ref(self))
        subscription.state = reader
        with self._state_lock:
            self._readers.add(reader)
            self._groups.setdefault(topic, {DEFAULT_GROUP}).add(group)

    def _fetch(
        self, subscription: Subscription, max_messages: int, timeout: float
    ) -> list[Delivery]:
        try:
            return self._pull(subscription, max_messages, timeout)
        except BrokerError:
            if subscription.closed or self._closed:
                return []  # its connection was closed under it (see Link.halt)
            raise
        finally:
            self._dropped.report()  # (what this fetch found void, if anything)

    def _pull(
        self, subscription: Subscription, max_messages: int, timeout: float
    ) -> list[Delivery]:
        reader: Reader = subscription.state
        link = self._reading()
        deadline = time.monotonic() + timeout
        reset = functools.partial(self._reset, reader)
        recovered = 0
        while True:
            try:
                if reader.consumer_tag is not None and (
                    reader.saturated() or reader.misfit(max_messages)
                ):
                    # It holds as many unsettled deliveries as its qos lets the server
                    # push (only basic.get can bring it another), or its qos is not
                    # this fetch's batch any more.
                    link.call(lambda: reader.stop_waiting(link), on_channel_error=reset)
                pull = reader.consumer_tag is None
                taken = link.call(
                    functools.partial(self._take, reader, max_messages, pull=pull),
                    on_channel_error=reset,
                )
                remaining = deadline - time.monotonic()
                if taken or subscription.closed or self._closed or remaining <= 0:
                    return taken
                # The consumer stays registered after this fetch (see Reader.listen).
                listen = functools.partial(reader.listen, link, max_messages)
                link.call(listen, on_channel_error=reset)
                # Watched without the lock: what comes is read by the next _take.
                link.await_frames(min(remaining, _SLICE))
            except BrokerError as exc:
                # RabbitMQ closed the channel on its own, and this fetch read the close
                # (waiting for an answer on it): the channel is dropped (reset), as when
                # another call reads it, and the fetch goes on over a new one: at
                # most _RECOVERIES times a fetch (a server closing every channel).
                if not closed_on_its_own(exc) or recovered >= _RECOVERIES:
                    raise
                recovered += 1

    def _take(self, reader: Reader, limit: int, *, pull: bool) -> list[Delivery]:
        """Deliveries for the caller; any past ``max_deliveries`` (its last holder
        died with it) is dead-lettered instead."""
        link = self._reading()
        if pull:
            taken = reader.take(link, limit)
        else:
            link.take_in()  # (what was pushed, to whichever subscription)
            reader.live_channel(link)  # (a lost one's inbox goes with it)
            taken = reader.hand_out(limit)
        limit_ = self.options.max_deliveries
        if limit_ is None:
            reader.handed(link, taken)
            return taken
        kept = []
        for delivery in taken:
            if delivery.attempt > limit_:
                # (one refused stays held, and is not handed out: see _isolated)
                self._isolated(
                    delivery.receipt,
                    functools.partial(
                        self._dead_letter,
                        delivery.receipt,
                        "max_deliveries",
                        delivery.attempt - 1,
                        unasked=True,
                    ),
                )
            else:
                kept.append(delivery)
        reader.handed(link, kept)
        return kept

    def _reset(self, reader: Reader) -> None:
        """RabbitMQ closed the channel of ``reader`` (it has every delivery on it back):
        drop the channel, and what the subscription buffered from it (call under the
        reading link's lock)."""
        reader.reset()
        self._dropped.drop([reader], self._reading())

    def _unsubscribe(self, subscription: Subscription, unreturned: list[Delivery]) -> None:
        reader: Reader = subscription.state
        link = self._reading()

        def hand_back() -> None:
            reader.stop_waiting(link)
            back = [*unreturned, *reader.inbox]
            reader.inbox.clear()
            self._requeue_or_dead_letter(back, requeue=True, unasked=True)
            reader.retiring = True
            self._retire_if_done(reader)

        try:
            if not self._closed and not self._halting.is_set():
                # A lost connection took its deliveries with it: the server has them
                # back already, and nothing is left to hand back over a new one.
                link.call(hand_back, on_channel_error=reader.reset, reconnect=False)
        except (ConnectionFailed, BrokerClosed):
            pass  # (BrokerClosed: the broker began closing meanwhile)
        finally:
            # Retired even if that failed: the next sweep forgets it once its channel
            # is gone (dropped on a channel error, or of a lost connection).
            reader.retiring = True

    def _hand_back(self, deliveries: list[Delivery]) -> None:
        """Deliveries fetched for a subscription and never handed to the application
        (a receive cut off by a timeout or a cancellation; a worker's that it never
        began): those the subscription still holds stay its own, for its next
        receive (see :meth:`Reader.keep_unread`), first attempts still and in their
        order; only those of a closing subscription go back to the queue."""
        if self._halting.is_set():
            # The broker is closing (see _halt): the connection's close hands them back.
            self._mark(deliveries)
            return
        kept: list[Delivery] = []
        readers = {d.receipt.reader for d in deliveries if isinstance(d.receipt, Lease)}
        if readers:
            # (lost: RabbitMQ has them back; the hand-back below finds them stale)
            with contextlib.suppress(BrokerError):
                link = self._reading()

                def keep() -> None:
                    for reader in readers:
                        kept.extend(reader.keep_unread(deliveries, link))

                link.call(keep, reconnect=False)
        self._mark(kept)
        ours = {id(d) for d in kept}
        super()._hand_back([d for d in deliveries if id(d) not in ours])

    def _retire_if_done(self, reader: Reader) -> None:
        """Close the channel of a closed subscription's reader once it holds nothing,
        and forget the reader then (call under the reading link's lock)."""
        reader.close_if_done()
        if reader.retiring and reader.channel is None:
            with self._state_lock:
                self._readers.discard(reader)

    def _forget_retired(self, link: Link) -> None:
        """Forget the readers of closed subscriptions whose channel is gone."""
        with self._state_lock:
            self._readers -= {
                r
                for r in self._readers
                if r.retiring and (r.channel is None or r.generation != link.generation)
            }

    def _sweep(self) -> None:
        """Keep the connections' heartbeats, hand back every delivery whose visibility
        timeout ran out (the reaper), then bind the subscriptions' queues again (see
        :mod:`._rebind`)."""
        if self._closed:
            return
        for heart in list(self._links):
            heart.heartbeat()
        if self._reading_link is not None:
            self._forget_retired(self._reading_link)
        with self._state_lock:
            readers = list(self._readers)
        if any(r.closed_by_server is not None for r in readers):
            # RabbitMQ closed their channels (another call read it): drop them now,
            # with what they buffered, and forget those of closed subscriptions.
            self._reading().call(functools.partial(self._drop_closed, readers))
        if self._reading_link is not None:
            # (reported here: what the heartbeat found lost was dropped as it did)
            self._forget_buffered(self._reading_link)
        if any(r.consumer_tag is not None for r in readers):
            # Nobody may be reading the socket for a consumer whose subscription went
            # idle: take in what was pushed to it, so that its leases can run out.
            self._reading().call(self._pump)
        self._expire(readers)
        if self._reading_link is not None and not self._closed:
            self._rebinder.sweep(self._reading_link, readers)  # (after the reaping)

    def _expire(self, readers: list[Reader]) -> None:
        """Hand back every delivery of ``readers`` whose visibility timeout ran out."""
        now = time.monotonic()
        if not any(lease.deadline <= now for r in readers for lease in list(r.leases.values())):
            return
        link = self._reading()

        def reap() -> None:
            limit = self.options.max_deliveries
            now = time.monotonic()
            for reader in readers:
                expired = [
                    lease
                    for lease in list(reader.leases.values())
                    if lease.deadline <= now and reader.holds(lease, link)
                ]
                if not expired:
                    continue
                # A reader that lets leases run out is hung (or gone idle): stop the
                # server pushing to it, and hand back what it was pushed but never took.
                reader.stop_waiting(link)
                for lease in expired:
                    attempt = lease.delivery.attempt
                    if limit is not None and attempt >= limit:
                        # (one refused does not stop the others: see _isolated)
                        self._isolated(
                            lease,
                            functools.partial(
                                self._dead_letter, lease, "max_deliveries", attempt, unasked=True
                            ),
                        )
                    else:
                        lease.channel.basic_reject(lease.tag, requeue=True)
                        reader.release(lease)
                    # (a late settle says that its lease ran out, even once the
                    # channel of a closed subscription is closed: see Reader.lost)
                    lease.ran_out = reader.leases.get(lease.tag) is not lease
                unread = list(reader.inbox)
                reader.inbox.clear()
                self._requeue_or_dead_letter(unread, requeue=True, unasked=True)
                self._retire_if_done(reader)
                # What it had buffered of those is not handed out any more.
                self._dropped.drop([reader], link)

        if not self._closed:
            link.call(reap)
            self._dropped.report()

    def _drop_closed(self, readers: list[Reader]) -> None:
        """Drop the channels RabbitMQ closed of ``readers`` (see Reader.closed_by_server)."""
        for reader in readers:
            if reader.closed_by_server is not None:
                self._reset(reader)
                self._retire_if_done(reader)

    def _pump(self) -> None:
        """Dispatch the frames already received, without waiting for more."""
        self._reading().take_in()

    # -- management ---------------------------------------------------------------

    def _inspect(self, topic: str) -> TopicInfo:
        with self._state_lock:
            groups = sorted(self._groups.get(topic, {DEFAULT_GROUP}))
            readers = list(self._readers)
        return _manage.inspect_topic(
            self._link, topic, self.dead_letter_topic(topic), groups, readers
        )

    def _purge(self, topic: str) -> int:
        with self._state_lock:
            groups = sorted(self._groups.get(topic, {DEFAULT_GROUP}))
        return _manage.purge_topic(self._link, topic, groups)

    def close(self) -> None:
        # A thread stuck on a server that stopped answering would hold up the close
        # (its subscription's close waits for its fetch): end its wait first.
        if not self._closed:
            self._halt()
        super().close()

    def _halt(self) -> None:
        """The broker is closing: nothing reconnects any more, a call stuck on a
        server that stopped answering is ended (see :meth:`Link.halt`), and the
        subscriptions' closes that follow hand nothing back (the connection's close
        does). :meth:`close` calls it first; so does the thread adapter's close under
        brokerkit.aio, before it closes the subscriptions."""
        self._halting.set()
        for link in list(self._links):
            link.halt()

    def _close(self) -> None:
        with self._state_lock:
            self._readers.clear()
        self._release()
        self._dropped.report()
