"""The in-memory backend: every capability, no server, thread-safe.

``memory://`` gives a private broker; ``memory://name`` gives the broker of that
name, shared by every connection in the process while one is open. Pass
``clock=brokerkit.ManualClock()`` to move time by hand in tests.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from brokerkit._broker import DEFAULT_GROUP, Broker
from brokerkit._capabilities import Capability
from brokerkit._clock import Clock, SystemClock
from brokerkit._delivery import Delivery
from brokerkit._inspect import ConsumerInfo, GroupInfo, TopicInfo
from brokerkit._message import Message
from brokerkit._options import BrokerOptions
from brokerkit._registry import BackendRegistry
from brokerkit._subscription import Subscription
from brokerkit._topics import topic_matches
from brokerkit._url import BrokerURL
from brokerkit.exceptions import InvalidOption, StaleDelivery
from brokerkit.hookspecs import hookimpl

__all__ = ["MemoryBroker", "MemoryOptions"]


@dataclass(frozen=True)
class MemoryOptions(BrokerOptions):
    """Options of ``memory://``."""

    #: Keep at most this many messages per topic, dropping the oldest (None: no cap).
    maxlen: int | None = None
    #: Where leases read the time (keyword only): a :class:`~brokerkit.ManualClock` in tests.
    clock: Clock | None = None

    keyword_only: ClassVar[frozenset[str]] = frozenset({"clock"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.maxlen is not None and self.maxlen < 1:
            raise InvalidOption(f"maxlen must be 1 or more (or unset), got {self.maxlen!r}")
        if self.clock is not None and not isinstance(self.clock, Clock):
            raise InvalidOption(f"clock must be a brokerkit.Clock, got {type(self.clock).__name__}")


@dataclass
class _Lease:
    offset: int
    message: Message
    consumer: str
    attempt: int
    deadline: float
    delivered_at: float


@dataclass
class _Group:
    cursor: int
    #: Handed back, to go out again before anything new: (offset, message, attempts so far).
    ready: collections.deque[tuple[int, Message, int]] = field(default_factory=collections.deque)
    pending: dict[int, _Lease] = field(default_factory=dict)
    consumers: dict[str, float] = field(default_factory=dict)
    #: A pattern subscription's own group whose subscription is closed: it keeps the
    #: leases it handed out until they are settled or run out, then it goes.
    retired: bool = False


@dataclass
class _Topic:
    log: collections.OrderedDict[int, Message] = field(default_factory=collections.OrderedDict)
    next_offset: int = 0
    groups: dict[str, _Group] = field(default_factory=dict)

    @property
    def first_offset(self) -> int:
        return next(iter(self.log), self.next_offset)


@dataclass
class _PatternState:
    group: str
    private: bool
    starts: dict[str, int]


class _Store:
    """The data of one named memory broker, shared by its connections."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.topics: dict[str, _Topic] = {}
        self.condition = threading.Condition()
        self.receipts = itertools.count(1)
        clock.on_advance(self.wake)

    def wake(self) -> None:
        with self.condition:
            self.condition.notify_all()

    def topic(self, name: str) -> _Topic:
        found = self.topics.get(name)
        if found is None:
            found = self.topics[name] = _Topic()
        return found


_named_stores: weakref.WeakValueDictionary[str, _Store] = weakref.WeakValueDictionary()
_named_lock = threading.Lock()


class MemoryBroker(Broker):
    """A broker held in this process's memory, with every capability."""

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
    )
    Options: ClassVar[type[BrokerOptions]] = MemoryOptions
    options: MemoryOptions

    def __init__(self, url: BrokerURL, options: BrokerOptions) -> None:
        super().__init__(url, options)
        clock = self.options.clock or SystemClock()
        name = url.host + url.path.strip("/")
        if not name:
            self._store = _Store(clock)
            return
        with _named_lock:
            store = _named_stores.get(name)
            if store is None:
                store = _named_stores[name] = _Store(clock)
        self._store = store

    # -- publishing ---------------------------------------------------------------

    def _publish(self, topic: str, messages: Sequence[Message]) -> None:
        store = self._store
        with store.condition:
            self._append(store.topic(topic), messages)
            store.condition.notify_all()

    def _append(self, topic: _Topic, messages: Sequence[Message]) -> None:
        for message in messages:
            topic.log[topic.next_offset] = message
            topic.next_offset += 1
        maxlen = self.options.maxlen
        while maxlen is not None and len(topic.log) > maxlen:
            topic.log.popitem(last=False)

    # -- consuming ----------------------------------------------------------------

    def _subscribe(self, subscription: Subscription) -> None:
        store = self._store
        with store.condition:
            if subscription.pattern:
                private = subscription.group == DEFAULT_GROUP
                group = f"pattern:{subscription.consumer}" if private else subscription.group
                starts = {name: t.next_offset for name, t in store.topics.items()}
                subscription.state = _PatternState(group, private, starts)
            else:
                self._group(store.topic(subscription.topic), subscription.group, subscription.start)

    def _group(self, topic: _Topic, name: str, start: str | None) -> _Group:
        group = topic.groups.get(name)
        if group is None:
            group = topic.groups[name] = _Group(cursor=self._start_offset(topic, start))
        return group

    @staticmethod
    def _start_offset(topic: _Topic, start: str | None) -> int:
        if start is None or start == "earliest":
            return topic.first_offset
        if start == "latest":
            return topic.next_offset
        try:
            return max(int(start), topic.first_offset)
        except ValueError:
            raise InvalidOption(
                f"start must be 'earliest', 'latest' or a whole-number offset, got {start!r}"
            ) from None

    def _fetch(
        self, subscription: Subscription, max_messages: int, timeout: float
    ) -> list[Delivery]:
        store = self._store
        # The timeout is real time even under a ManualClock, which only moves when
        # told to: leases are judged by the store's clock, waiting by the wall clock.
        deadline = time.monotonic() + timeout
        with store.condition:
            while True:
                now = store.clock.now()
                self._expire(now)
                fetched = self._take(subscription, max_messages, now)
                if fetched or subscription.closed:
                    return fetched
                wait = deadline - time.monotonic()
                if wait <= 0:
                    return []
                next_expiry = self._next_expiry()
                if next_expiry is not None:
                    wait = min(wait, max(next_expiry - now, 0.001))
                store.condition.wait(wait)

    def _take(self, subscription: Subscription, limit: int, now: float) -> list[Delivery]:
        taken: list[Delivery] = []
        for topic_name, topic, group in self._sources(subscription):
            group.consumers[subscription.consumer] = now
            while len(taken) < limit:
                item = self._next(topic, group)
                if item is None:
                    break
                offset, message, attempt = item
                receipt = next(self._store.receipts)
                group.pending[receipt] = _Lease(
                    offset,
                    message,
                    subscription.consumer,
                    attempt,
                    now + self.options.visibility_timeout,
                    now,
                )
                taken.append(
                    Delivery(
                        message,
                        subscription=subscription,
                        attempt=attempt,
                        receipt=(topic_name, self._group_name(subscription), receipt),
                    )
                )
            if len(taken) >= limit:
                break
        return taken

    @staticmethod
    def _group_name(subscription: Subscription) -> str:
        state = subscription.state
        return state.group if isinstance(state, _PatternState) else subscription.group

    def _sources(self, subscription: Subscription) -> Iterator[tuple[str, _Topic, _Group]]:
        store = self._store
        state = subscription.state
        if not isinstance(state, _PatternState):
            topic = store.topic(subscription.topic)
            yield subscription.topic, topic, self._group(topic, subscription.group, None)
            return
        for name in sorted(store.topics):
            if topic_matches(subscription.topic, name):
                topic = store.topics[name]
                group = topic.groups.get(state.group)
                if group is None:
                    start = max(state.starts.get(name, 0), topic.first_offset)
                    group = topic.groups[state.group] = _Group(cursor=start)
                yield name, topic, group

    @staticmethod
    def _next(topic: _Topic, group: _Group) -> tuple[int, Message, int] | None:
        """The next message for the group, with the attempt this delivery will be."""
        if group.ready:
            offset, message, attempts = group.ready.popleft()
            return offset, message, attempts + 1
        group.cursor = max(group.cursor, topic.first_offset)
        while group.cursor < topic.next_offset:
            offset = group.cursor
            group.cursor += 1
            stored = topic.log.get(offset)
            if stored is not None:
                return offset, stored, 1
        return None

    def _unsubscribe(self, subscription: Subscription, unreturned: list[Delivery]) -> None:
        super()._unsubscribe(subscription, unreturned)
        state = subscription.state
        if isinstance(state, _PatternState) and state.private:
            with self._store.condition:
                for topic in self._store.topics.values():
                    group = topic.groups.get(state.group)
                    if group is not None:
                        group.retired = True
                        group.ready.clear()
                        self._drop_if_retired(topic, state.group)

    @staticmethod
    def _drop_if_retired(topic: _Topic, name: str) -> None:
        group = topic.groups.get(name)
        if group is not None and group.retired and not group.pending:
            del topic.groups[name]

    # -- settling -----------------------------------------------------------------

    def _ack(self, deliveries: Sequence[Delivery]) -> None:
        with self._store.condition:
            self._expire(self._store.clock.now())
            stale = [d for d in deliveries if self._release_lease(d) is None]
        if stale:
            raise StaleDelivery(stale)

    def _nack(self, deliveries: Sequence[Delivery], requeue: bool) -> None:
        store = self._store
        with store.condition:
            self._expire(store.clock.now())
            stale = []
            for delivery in deliveries:
                topic_name, group_name, _ = delivery.receipt
                group = store.topics[topic_name].groups.get(group_name)
                lease = self._release_lease(delivery)
                if lease is None or group is None:
                    stale.append(delivery)
                    continue
                if group.retired and requeue:
                    continue  # nobody reads a retired group: the message is done for it
                reason = "rejected" if not requeue else "max_deliveries"
                self._requeue_or_dead_letter(topic_name, group, lease, requeue, reason)
            store.condition.notify_all()
        if stale:
            raise StaleDelivery(stale)

    def _extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        store = self._store
        with store.condition:
            now = store.clock.now()
            self._expire(now)
            stale = []
            for delivery in deliveries:
                lease = self._lease(delivery)
                if lease is None:
                    stale.append(delivery)
                else:
                    lease.deadline = now + seconds
        if stale:
            raise StaleDelivery(stale)

    def _lease(self, delivery: Delivery) -> _Lease | None:
        topic_name, group_name, receipt = delivery.receipt
        topic = self._store.topics.get(topic_name)
        group = topic.groups.get(group_name) if topic else None
        return group.pending.get(receipt) if group else None

    def _release_lease(self, delivery: Delivery) -> _Lease | None:
        lease = self._lease(delivery)
        if lease is not None:
            topic_name, group_name, receipt = delivery.receipt
            group = self._store.topics[topic_name].groups[group_name]
            del group.pending[receipt]
            self._drop_if_retired(self._store.topics[topic_name], group_name)
        return lease

    def _requeue_or_dead_letter(
        self, topic_name: str, group: _Group, lease: _Lease, requeue: bool, reason: str
    ) -> None:
        limit = self.options.max_deliveries
        if requeue and (limit is None or lease.attempt < limit):
            group.ready.append((lease.offset, lease.message, lease.attempt))
            return
        dead = dataclasses.replace(
            lease.message,
            topic=self.dead_letter_topic(topic_name),
            headers={
                **lease.message.headers,
                "x-dead-letter-reason": reason,
                "x-original-topic": topic_name,
                "x-deliveries": str(lease.attempt),
            },
        )
        self._append(self._store.topic(dead.topic), [dead])

    def _expire(self, now: float) -> None:
        """Hand back every delivery whose lease ran out."""
        for name, topic in list(self._store.topics.items()):
            for group_name, group in list(topic.groups.items()):
                for receipt, lease in list(group.pending.items()):
                    if lease.deadline <= now:
                        del group.pending[receipt]
                        if not group.retired:  # nobody reads a retired group again
                            self._requeue_or_dead_letter(name, group, lease, True, "max_deliveries")
                self._drop_if_retired(topic, group_name)

    def _next_expiry(self) -> float | None:
        deadlines = [
            lease.deadline
            for topic in self._store.topics.values()
            for group in topic.groups.values()
            for lease in group.pending.values()
        ]
        return min(deadlines, default=None)

    # -- management ---------------------------------------------------------------

    def _inspect(self, topic: str) -> TopicInfo:
        store = self._store
        with store.condition:
            now = store.clock.now()
            self._expire(now)
            state = store.topics.get(topic) or _Topic()
            groups = []
            leases: list[_Lease] = []
            for name, group in state.groups.items():
                per_consumer = collections.Counter(
                    lease.consumer for lease in group.pending.values()
                )
                leases.extend(group.pending.values())
                lag = len(group.ready) + sum(1 for o in state.log if o >= group.cursor)
                consumers = tuple(
                    ConsumerInfo(c, per_consumer.get(c, 0), now - seen)
                    for c, seen in sorted(group.consumers.items())
                )
                groups.append(GroupInfo(name, len(group.pending), lag, consumers))
            dead = store.topics.get(self.dead_letter_topic(topic))
            oldest = min((lease.delivered_at for lease in leases), default=None)
            return TopicInfo(
                topic=topic,
                length=len(state.log),
                in_flight=len(leases),
                dead_lettered=len(dead.log) if dead else 0,
                oldest_in_flight_age=None if oldest is None else now - oldest,
                groups=tuple(groups),
            )

    def _purge(self, topic: str) -> int:
        with self._store.condition:
            state = self._store.topics.get(topic)
            if state is None:
                return 0
            removed = len(state.log)
            for group in state.groups.values():
                removed += sum(1 for offset, _, _ in group.ready if offset not in state.log)
                group.ready.clear()
                group.cursor = state.next_offset
            state.log.clear()
            return removed

    def _close(self) -> None:
        self._store.wake()


@hookimpl
def brokerkit_register_backends(registry: BackendRegistry) -> None:
    registry.add(MemoryBroker)
