"""The in-memory backend: every capability, no server, safe to share between threads.

``memory://`` gives a private broker; ``memory://name`` gives the broker of that
name, shared by every connection in the process while one is open (sync and async
connections alike). Pass ``clock=brokerkit.ManualClock()`` to move time by hand in tests.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator, Sequence
from typing import ClassVar

from brokerkit._acompat import Waiter, checkpoint
from brokerkit._broker_async import DEFAULT_GROUP, AsyncBroker
from brokerkit._capabilities import Capability
from brokerkit._delivery_async import AsyncDelivery
from brokerkit._inspect import TopicInfo
from brokerkit._message import Message
from brokerkit._options import BrokerOptions
from brokerkit._subscription_async import AsyncSubscription
from brokerkit._topics import topic_matches
from brokerkit._url import BrokerURL
from brokerkit.backends.memory.store import (
    Group,
    Lease,
    MemoryOptions,
    PatternState,
    Topic,
    check_start,
    dead_letter_of,
    drop_if_retired,
    next_for,
    open_store,
    pattern_start,
    release_store,
    start_offset,
)
from brokerkit.exceptions import StaleDelivery

__all__ = ["AsyncMemoryBroker"]


class AsyncMemoryBroker(AsyncBroker):
    """A broker held in this process's memory, with every capability.

    Under asyncio, publishing, fetching and settling each let the other tasks run
    once, as a call to a server would, so that a consumer that always finds work
    never starves the event loop.
    """

    schemes: ClassVar[tuple[str, ...]] = ("memory",)
    capabilities: ClassVar[Capability] = (
        Capability.PERSISTENT
        | Capability.ACK
        | Capability.COMPETING
        | Capability.FANOUT
        | Capability.REPLAY
        | Capability.DEAD_LETTER
        | Capability.ORDERED
        | Capability.PATTERNS
        | Capability.BOUNDED
        | Capability.DELAY
    )
    Options: ClassVar[type[BrokerOptions]] = MemoryOptions
    options: MemoryOptions

    def __init__(self, url: BrokerURL, options: BrokerOptions) -> None:
        super().__init__(url, options)
        # memory://a/b and memory://ab are two names, memory://a/ and memory://a one.
        name = "/".join(part for part in (url.host, url.path.strip("/")) if part)
        self._store = open_store(name, self.options.clock, shown=str(url))
        # Released on close, or when a broker nobody closed is garbage: a named store
        # lives while a broker of that name is open, and no longer.
        self._release_store = weakref.finalize(self, release_store, name, self._store)

    # -- publishing ---------------------------------------------------------------

    async def _publish(self, topic: str, messages: Sequence[Message]) -> None:
        await checkpoint()
        store = self._store
        with store.lock:
            self._append(store.topic(topic), messages)
        store.wake()

    async def _publish_delayed(self, topic: str, messages: Sequence[Message], delay: float) -> None:
        await checkpoint()
        store = self._store
        with store.lock:
            self._hold(store.topic(topic), messages, store.clock.now() + delay)
        store.wake()

    # -- consuming ----------------------------------------------------------------

    async def _subscribe(self, subscription: AsyncSubscription) -> None:
        store = self._store
        with store.lock:
            if subscription.pattern:
                start = pattern_start(subscription.start)
                private = subscription.group == DEFAULT_GROUP
                # A private group is the subscription's own, whatever its consumer is
                # called: two subscriptions of one name each get every message, and
                # no application group has its name (see Store.private_group).
                group = (
                    store.private_group(subscription.consumer) if private else subscription.group
                )
                # Where its group starts in each topic that matches, when it gets there:
                # "latest", the default, in a topic that exists now is its end now, in
                # a topic made later its beginning; "earliest" is every topic's beginning.
                starts = (
                    {}
                    if start == "earliest"
                    else {name: t.next_offset for name, t in store.topics.items()}
                )
                subscription.state = PatternState(group, private, starts)
            else:
                # Checked even for a group that exists (and so ignores it), as on redis+stream.
                check_start(subscription.start)
                self._group(store.topic(subscription.topic), subscription.group, subscription.start)

    async def _fetch(
        self, subscription: AsyncSubscription, max_messages: int, timeout: float
    ) -> list[AsyncDelivery]:
        store = self._store
        # The timeout is real time even under a ManualClock, which only moves when
        # told to: leases are judged by the store's clock, waiting by the wall clock.
        deadline = time.monotonic() + timeout
        await checkpoint()
        while True:
            with store.lock:
                # Closed (its close wakes this fetch): take nothing. A fetch that a
                # cancelled receive left running may outlive the close, which dropped
                # the subscription's private group: taking would make it again.
                if subscription.closed:
                    return []
                now = store.clock.now()
                self._expire(now)
                self._release_due(now)
                fetched = self._take(subscription, max_messages, now)
                if not fetched:
                    wait = deadline - time.monotonic()
                    if wait <= 0:
                        return []
                    for moment in (self._next_expiry(), self._next_due()):
                        if moment is not None:
                            wait = min(wait, max(moment - now, 0.001))
                    # Registered under the lock: a change made after the look above wakes it.
                    waiter = Waiter()
                    store.listen(waiter)
            if fetched:
                # Leases that run out before any other: the waiting consumers look again.
                store.wake_for_deadline()
                return fetched
            if not await waiter.wait(wait):
                store.unlisten(waiter)

    def _take(self, subscription: AsyncSubscription, limit: int, now: float) -> list[AsyncDelivery]:
        store = self._store
        receipts = store.receipts
        consumer = subscription.consumer
        group_name = self._group_name(subscription)
        # One fetch leases all it takes until the same moment, under this connection's
        # options (what becomes of a lease that runs out is its taker's to say).
        options = self.options
        deadline = now + options.visibility_timeout
        next_item = self._next
        taken: list[AsyncDelivery] = []
        wanted = limit
        try:
            for topic_name, topic, group in self._sources(subscription):
                group.consumers[consumer] = now
                pending = group.pending
                while wanted > 0:
                    item = next_item(topic, group)
                    if item is None:
                        break
                    offset, message, attempt = item
                    receipt = next(receipts)
                    delivery = AsyncDelivery(
                        message,
                        subscription=subscription,
                        attempt=attempt,
                        receipt=(topic_name, group_name, receipt),
                    )
                    pending[receipt] = Lease(
                        offset, message, consumer, attempt, deadline, now, options
                    )
                    taken.append(delivery)
                    wanted -= 1
                if wanted <= 0:
                    break
        finally:
            if taken:  # even when a rule failed half-way: the leases made must run out
                store.note_deadline(deadline)
        return taken

    @staticmethod
    def _group_name(subscription: AsyncSubscription) -> str:
        state = subscription.state
        return state.group if isinstance(state, PatternState) else subscription.group

    def _sources(self, subscription: AsyncSubscription) -> Iterator[tuple[str, Topic, Group]]:
        store = self._store
        state = subscription.state
        if not isinstance(state, PatternState):
            topic = store.topic(subscription.topic)
            yield subscription.topic, topic, self._group(topic, subscription.group, None)
            return
        for name in sorted(store.topics):
            if topic_matches(subscription.topic, name):
                topic = store.topics[name]
                group = topic.groups.get(state.group)
                if group is None:
                    if subscription.closed:  # its group was retired: never made again
                        continue
                    start = max(state.starts.get(name, 0), topic.first_offset)
                    group = topic.groups[state.group] = Group(cursor=start)
                elif group.retired:  # it only waits for its leases to be settled
                    continue
                yield name, topic, group

    def _wake_fetches(self, subscription: AsyncSubscription) -> None:
        # Every waiting fetch looks again; the closed subscription's ends.
        self._store.wake()

    async def _unsubscribe(
        self, subscription: AsyncSubscription, unreturned: list[AsyncDelivery]
    ) -> None:
        await super()._unsubscribe(subscription, unreturned)
        state = subscription.state
        if isinstance(state, PatternState) and state.private:
            with self._store.lock:
                for topic in self._store.topics.values():
                    group = topic.groups.get(state.group)
                    if group is not None:
                        group.retired = True
                        group.ready.clear()
                        group.delayed.clear()
                        drop_if_retired(topic, state.group)

    async def _hand_back(self, deliveries: list[AsyncDelivery]) -> None:
        """Deliveries fetched but never given to the application go back first in line,
        as they were: no attempt is counted for a delivery nobody saw."""
        store = self._store
        with store.lock:
            self._expire(store.clock.now())
            returned: dict[int, list[tuple[int, Message, int]]] = {}
            groups: dict[int, Group] = {}
            for delivery in deliveries:
                topic_name, group_name, _ = delivery.receipt
                group = store.topics[topic_name].groups.get(group_name)
                lease = self._release_lease(delivery)
                if lease is None or group is None or group.retired:
                    continue  # its lease ran out already: it is back in line
                groups[id(group)] = group
                returned.setdefault(id(group), []).append(
                    (lease.offset, lease.message, lease.attempt - 1)
                )
            for key, items in returned.items():
                groups[key].ready.extendleft(reversed(items))
        store.wake()
        self._mark(deliveries)

    # -- settling -----------------------------------------------------------------

    async def _ack(self, deliveries: Sequence[AsyncDelivery]) -> None:
        await checkpoint()
        store = self._store
        with store.lock:
            self._expire(store.clock.now())
            stale = [d for d in deliveries if self._release_lease(d) is None]
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
        await checkpoint()
        store = self._store
        with store.lock:
            self._expire(store.clock.now())
            stale = []
            for delivery in deliveries:
                topic_name, group_name, _ = delivery.receipt
                group = store.topics[topic_name].groups.get(group_name)
                lease = self._release_lease(delivery)
                if lease is None or group is None:
                    stale.append(delivery)
                    continue
                why = reason or ("rejected" if not requeue else "max_deliveries")
                self._requeue_or_dead_letter(topic_name, group, lease, requeue, why, delay)
        store.wake()
        if stale:
            raise StaleDelivery(stale)

    async def _extend(self, deliveries: Sequence[AsyncDelivery], seconds: float) -> None:
        store = self._store
        with store.lock:
            now = store.clock.now()
            self._expire(now)
            stale = []
            for delivery in deliveries:
                lease = self._lease(delivery)
                if lease is None:
                    stale.append(delivery)
                else:
                    lease.deadline = now + seconds
                    store.note_deadline(lease.deadline)
        # A lease shortened to run out before any other: the waiting consumers wait
        # for a later deadline, so they look again (and time their wait by this one).
        store.wake_for_deadline()
        if stale:
            raise StaleDelivery(stale)

    # -- management ---------------------------------------------------------------

    async def _inspect(self, topic: str) -> TopicInfo:
        store = self._store
        with store.lock:
            now = store.clock.now()
            self._expire(now)
            self._release_due(now)
            return store.inspect(topic, now)

    async def _list_topics(self) -> list[str]:
        with self._store.lock:
            return self._store.topic_names()

    async def _purge(self, topic: str) -> int:
        with self._store.lock:
            return self._store.purge(topic)

    async def _close(self) -> None:
        self._store.wake()
        self._release_store()

    # -- the rules, each a method that a subclass may replace (the project's tests
    # build deliberately broken backends this way); all run under the store's lock.

    def _append(self, topic: Topic, messages: Sequence[Message]) -> None:
        """Append as this connection: its ``maxlen`` caps the topic."""
        self._store.append(topic, list(messages), self.options.maxlen)

    def _append_capped(self, topic: Topic, messages: Sequence[Message], maxlen: int | None) -> None:
        """Append for the connection whose cap is ``maxlen`` (the one that published a
        held message, or took a lease that ran out): through :meth:`_append` when that
        is this connection's own cap, as it always is on a store used with one set of
        options."""
        if maxlen == self.options.maxlen:
            self._append(topic, messages)
        else:
            self._store.append(topic, list(messages), maxlen)

    def _hold(self, topic: Topic, messages: Sequence[Message], due: float) -> None:
        """Keep delayed publishes out of the topic until ``due``; this connection's
        ``maxlen`` caps the topic when they go in, whichever connection releases them."""
        self._store.hold(topic, list(messages), due, self.options.maxlen)

    def _release_due(self, now: float) -> None:
        """Put what is due by ``now`` where consumers find it: delayed publishes at
        the end of their topic, delayed retries in their group's line, in due order."""
        for topic, messages, maxlen in self._store.take_due(now):
            self._append_capped(topic, messages, maxlen)

    def _next_due(self) -> float | None:
        return self._store.next_due()

    def _expire(self, now: float) -> None:
        """Hand back every delivery whose lease ran out."""
        for topic_name, group, lease in self._store.expired(now):
            self._requeue_or_dead_letter(topic_name, group, lease, True, "max_deliveries")

    def _group(self, topic: Topic, name: str, start: str | None) -> Group:
        group = topic.groups.get(name)
        if group is None:
            group = topic.groups[name] = Group(cursor=self._start_offset(topic, start))
        return group

    @staticmethod
    def _start_offset(topic: Topic, start: str | None) -> int:
        return start_offset(topic, start)

    def _next_expiry(self) -> float | None:
        return self._store.next_expiry()

    #: The next message for the group, with the attempt this delivery will be: the
    #: store's rule itself, called once per message without a frame of its own.
    _next = staticmethod(next_for)

    def _lease(self, delivery: AsyncDelivery) -> Lease | None:
        return self._store.lease(delivery.receipt)

    def _release_lease(self, delivery: AsyncDelivery) -> Lease | None:
        return self._store.release(delivery.receipt)

    def _requeue_or_dead_letter(
        self,
        topic_name: str,
        group: Group,
        lease: Lease,
        requeue: bool,
        reason: str,
        delay: float | None = None,
    ) -> None:
        # The options of the connection that took the lease, not of the one that
        # happened to notice that it ran out.
        options = self.options if lease.options is None else lease.options
        limit = options.max_deliveries
        if requeue and (limit is None or lease.attempt < limit):
            if group.retired:
                # A closed pattern subscription's own group: nobody reads it again, so
                # nothing is delivered again; at the limit, it is dead-lettered as on
                # any group (what the settlement hooks report).
                return
            if delay:
                due = self._store.clock.now() + delay
                self._store.hold_retry(group, lease.offset, lease.message, lease.attempt, due)
            else:
                group.ready.append((lease.offset, lease.message, lease.attempt))
            return
        dead = dead_letter_of(lease.message, topic_name, reason, lease.attempt)
        self._append_capped(self._store.topic(dead.topic), [dead], options.maxlen)
