"""The data of a memory broker and the rules that change it: no waiting, no I/O.

One :class:`Store` holds the topics of one named broker (``memory://name``) and is
shared by every connection to that name, sync and async alike. Every method here runs
under :attr:`Store.lock`, held by the caller; waiting for a change is a
:class:`~brokerkit._compat.Waiter` (or its asyncio twin) registered with :meth:`Store.listen`.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from brokerkit._clock import Clock, SystemClock
from brokerkit._inspect import DEAD_LETTER_GROUPS, ConsumerInfo, GroupInfo, TopicInfo
from brokerkit._message import Message
from brokerkit._options import BrokerOptions
from brokerkit._topics import dead_letter_topic_of
from brokerkit.backends.memory.positions import check_start, pattern_start, start_offset
from brokerkit.exceptions import InvalidOption

__all__ = [
    "Group",
    "Lease",
    "MemoryOptions",
    "PatternState",
    "Store",
    "Topic",
    "check_start",
    "dead_letter_of",
    "open_store",
    "pattern_start",
    "release_store",
    "start_offset",
]


@dataclass(frozen=True)
class MemoryOptions(BrokerOptions):
    """Options of ``memory://``."""

    #: Keep at most this many messages per topic, dropping the oldest (None: no cap).
    #: On a store shared by connections, it caps what this connection appends: its
    #: publishes (delayed ones when they come due) and the dead letters of the leases
    #: it took, whichever connection of the store releases them.
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


@dataclass(slots=True)
class Lease:
    offset: int
    message: Message
    consumer: str
    attempt: int
    deadline: float
    delivered_at: float
    #: The options of the connection that took it: its ``max_deliveries`` and
    #: ``maxlen`` decide what becomes of the message when the lease runs out, whichever
    #: connection of the store notices (None: the settling connection's own).
    options: MemoryOptions | None = None


@dataclass
class Group:
    cursor: int
    #: Handed back, to go out again before anything new: (offset, message, attempts so far).
    ready: collections.deque[tuple[int, Message, int]] = field(default_factory=collections.deque)
    pending: dict[int, Lease] = field(default_factory=dict)
    consumers: dict[str, float] = field(default_factory=dict)
    #: Delayed retries, a heap: (due, sequence, offset, message, attempts so far).
    delayed: list[tuple[float, int, int, Message, int]] = field(default_factory=list)
    #: A pattern subscription's own group whose subscription is closed: it keeps the
    #: leases it handed out until they are settled or run out, then it goes.
    retired: bool = False


@dataclass
class Topic:
    log: collections.OrderedDict[int, Message] = field(default_factory=collections.OrderedDict)
    next_offset: int = 0
    groups: dict[str, Group] = field(default_factory=dict)
    #: Delayed publishes, held outside the log until due, a heap: (due, sequence,
    #: message, the maxlen of the connection that published it).
    scheduled: list[tuple[float, int, Message, int | None]] = field(default_factory=list)

    @property
    def first_offset(self) -> int:
        return next(iter(self.log), self.next_offset)


@dataclass
class PatternState:
    group: str
    private: bool
    starts: dict[str, int]


class Wakeable(Protocol):
    def wake(self) -> None: ...


def dead_letter_of(message: Message, topic: str, reason: str, attempts: int) -> Message:
    """``message`` as it goes to ``topic``'s dead-letter topic (``topic`` itself at
    the last level: see :func:`~brokerkit._topics.dead_letter_topic_of`)."""
    return dataclasses.replace(
        message,
        topic=dead_letter_topic_of(topic),
        headers={
            **message.headers,
            "x-dead-letter-reason": reason,
            "x-original-topic": topic,
            "x-deliveries": str(attempts),
        },
    )


class Store:
    """The topics of one memory broker, the lock that guards them, and the consumers
    waiting for them to change."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.topics: dict[str, Topic] = {}
        self.lock = threading.RLock()
        self.receipts = itertools.count(1)
        self._waiters: set[Wakeable] = set()
        #: No lease runs out before this (a lower bound: settled leases may have held
        #: it up), so that settling is not a scan of every lease in flight.
        self._earliest_deadline: float | None = None
        #: A lease was made or moved to run out before every deadline known until then:
        #: the consumers waiting wait for a later one (see wake_for_deadline).
        self._deadline_moved = False
        #: Nothing held for a due time is due before this (a lower bound, as above).
        self._earliest_due: float | None = None
        self._sequence = itertools.count()
        #: Numbers the private groups of pattern subscriptions, one each.
        self.pattern_groups = itertools.count(1)
        clock.on_advance(self.wake)

    def private_group(self, consumer: str) -> str:
        """A new name for a pattern subscription's own group: with spaces, which no
        valid group name has (:func:`~brokerkit._topics.check_group`), so that it is
        never an application's group."""
        return f"pattern {consumer} #{next(self.pattern_groups)}"

    # -- waiting ------------------------------------------------------------------

    def listen(self, waiter: Wakeable) -> None:
        """Wake ``waiter`` at the next change (call it under :attr:`lock`)."""
        self._waiters.add(waiter)

    def unlisten(self, waiter: Wakeable) -> None:
        """Forget ``waiter`` (it stopped waiting without being woken)."""
        with self.lock:
            self._waiters.discard(waiter)

    def wake(self) -> None:
        """Wake every waiting consumer: something changed, or the clock moved."""
        with self.lock:
            waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            waiter.wake()

    # -- topics -------------------------------------------------------------------

    def topic(self, name: str) -> Topic:
        found = self.topics.get(name)
        if found is None:
            found = self.topics[name] = Topic()
        return found

    def append(self, topic: Topic, messages: list[Message], maxlen: int | None) -> None:
        log, offset = topic.log, topic.next_offset
        for message in messages:
            log[offset] = message
            offset += 1
        topic.next_offset = offset
        while maxlen is not None and len(topic.log) > maxlen:
            topic.log.popitem(last=False)

    # -- delays -------------------------------------------------------------------

    def hold(self, topic: Topic, messages: list[Message], due: float, maxlen: int | None) -> None:
        """Keep ``messages`` out of ``topic``'s log until ``due``; then they go in
        capped by ``maxlen``, the publisher's, whoever releases them."""
        for message in messages:
            heapq.heappush(topic.scheduled, (due, next(self._sequence), message, maxlen))
        self._note_due(due)

    def hold_retry(
        self, group: Group, offset: int, message: Message, attempts: int, due: float
    ) -> None:
        """Keep a nacked message from ``group`` until ``due``."""
        heapq.heappush(group.delayed, (due, next(self._sequence), offset, message, attempts))
        self._note_due(due)

    def _note_due(self, due: float) -> None:
        if self._earliest_due is None or due < self._earliest_due:
            self._earliest_due = due

    def take_due(self, now: float) -> list[tuple[Topic, list[Message], int | None]]:
        """Move the retries due by ``now`` to their groups' ready queues, in due order,
        and take out the publishes due by ``now``: (topic, messages in due order, the
        maxlen their publisher set) each, a run of one publisher's cap, for the caller
        to append to the log in that order."""
        if self._earliest_due is None or now < self._earliest_due:
            return []
        self._earliest_due = None
        published: list[tuple[Topic, list[Message], int | None]] = []
        for topic in self.topics.values():
            run: list[Message] = []
            cap: int | None = None
            while topic.scheduled and topic.scheduled[0][0] <= now:
                _, _, message, maxlen = heapq.heappop(topic.scheduled)
                if run and maxlen != cap:
                    published.append((topic, run, cap))
                    run = []
                run.append(message)
                cap = maxlen
            if run:
                published.append((topic, run, cap))
            if topic.scheduled:
                self._note_due(topic.scheduled[0][0])
            for group in topic.groups.values():
                while group.delayed and group.delayed[0][0] <= now:
                    _, _, offset, message, attempts = heapq.heappop(group.delayed)
                    group.ready.append((offset, message, attempts))
                if group.delayed:
                    self._note_due(group.delayed[0][0])
        return published

    def next_due(self) -> float | None:
        """Nothing held is due before this (None: nothing is held)."""
        return self._earliest_due

    # -- leases -------------------------------------------------------------------

    def lease(self, receipt: tuple[str, str, int]) -> Lease | None:
        topic_name, group_name, number = receipt
        topic = self.topics.get(topic_name)
        group = topic.groups.get(group_name) if topic else None
        return group.pending.get(number) if group else None

    def release(self, receipt: tuple[str, str, int]) -> Lease | None:
        """Take out the lease of ``receipt`` (None: it is not held)."""
        topic_name, group_name, number = receipt
        topic = self.topics.get(topic_name)
        if topic is None:
            return None
        group = topic.groups.get(group_name)
        if group is None:
            return None
        lease = group.pending.pop(number, None)
        if lease is not None and group.retired and not group.pending:
            del topic.groups[group_name]
        return lease

    def note_deadline(self, deadline: float) -> None:
        """A lease was made or moved to run out at ``deadline``. When that is earlier
        than every deadline known until now, the consumers waiting time their wait by
        a later one: :meth:`wake_for_deadline`, after the lock, wakes them."""
        if self._earliest_deadline is None or deadline < self._earliest_deadline:
            self._earliest_deadline = deadline
            self._deadline_moved = True

    def wake_for_deadline(self) -> None:
        """Wake the waiting consumers if a lease was made or moved to run out before
        the deadline they wait for (call it after releasing :attr:`lock`)."""
        # Read without the lock first, the usual case: whoever set it calls this too.
        if not self._deadline_moved:
            return
        with self.lock:
            moved, self._deadline_moved = self._deadline_moved, False
        if moved:
            self.wake()

    def expired(self, now: float) -> list[tuple[str, Group, Lease]]:
        """Take out every lease that ran out by ``now``: (topic, group, lease) each."""
        if self._earliest_deadline is None or now < self._earliest_deadline:
            return []
        self._earliest_deadline = None
        found = []
        for name, topic in list(self.topics.items()):
            for group_name, group in list(topic.groups.items()):
                for receipt, lease in list(group.pending.items()):
                    if lease.deadline <= now:
                        del group.pending[receipt]
                        found.append((name, group, lease))
                    elif (
                        self._earliest_deadline is None or lease.deadline < self._earliest_deadline
                    ):
                        # a lease known before: no waiting consumer needs a wake
                        self._earliest_deadline = lease.deadline
                drop_if_retired(topic, group_name)
        return found

    def next_expiry(self) -> float | None:
        """No lease runs out before this (None: none is held)."""
        return self._earliest_deadline

    # -- management ---------------------------------------------------------------

    def inspect(self, topic: str, now: float) -> TopicInfo:
        state = self.topics.get(topic) or Topic()
        groups = []
        leases: list[Lease] = []
        for name, group in state.groups.items():
            per_consumer = collections.Counter(lease.consumer for lease in group.pending.values())
            leases.extend(group.pending.values())
            lag = len(group.ready) + sum(1 for o in state.log if o >= group.cursor)
            consumers = tuple(
                ConsumerInfo(c, per_consumer.get(c, 0), now - seen)
                for c, seen in sorted(group.consumers.items())
            )
            groups.append(GroupInfo(name, len(group.pending), lag, consumers))
        dead = self.topics.get(dead_letter_topic_of(topic))
        oldest = min((lease.delivered_at for lease in leases), default=None)
        published = _oldest_waiting(state)
        scheduled = len(state.scheduled) + sum(len(g.delayed) for g in state.groups.values())
        return TopicInfo(
            topic=topic,
            length=len(state.log),
            in_flight=len(leases),
            dead_lettered=_dead_letters(dead),
            oldest_in_flight_age=None if oldest is None else now - oldest,
            groups=tuple(groups),
            # published_at is the publisher's wall clock, whatever clock the store runs on
            oldest_waiting_age=None if published is None else max(time.time() - published, 0.0),
            scheduled=scheduled,
        )

    def topic_names(self) -> list[str]:
        """The topics that hold anything: a message (delayed ones too), a group, a
        delivery out."""
        return sorted(
            name
            for name, state in self.topics.items()
            if state.log or state.groups or state.scheduled
        )

    def purge(self, topic: str) -> int:
        state = self.topics.get(topic)
        if state is None:
            return 0
        removed = len(state.log) + len(state.scheduled)
        state.scheduled.clear()
        for group in state.groups.values():
            removed += sum(1 for offset, _, _ in group.ready if offset not in state.log)
            removed += sum(1 for _, _, offset, _, _ in group.delayed if offset not in state.log)
            group.ready.clear()
            group.delayed.clear()
            group.cursor = state.next_offset
        state.log.clear()
        return removed


def _dead_letters(dead: Topic | None) -> int:
    """The dead letters still waiting to be dealt with: the log keeps settled ones for
    replay, so the fewer either group of :data:`DEAD_LETTER_GROUPS` that exists has
    not settled (waiting, out, or delayed); every stored one where neither exists.
    Another group (a tail from "latest", say) does not count."""
    if dead is None:
        return 0
    unsettled = [len(dead.log)]
    for name in DEAD_LETTER_GROUPS:
        group = dead.groups.get(name)
        if group is not None:
            waiting = len(group.ready) + sum(1 for o in dead.log if o >= group.cursor)
            unsettled.append(waiting + len(group.pending) + len(group.delayed))
    return min(unsettled)


def _oldest_waiting(state: Topic) -> float | None:
    """When the oldest message not yet handed to some group was published."""
    if not state.groups:
        first = next(iter(state.log.values()), None)
        return None if first is None else first.published_at
    stamps: list[float] = []
    for group in state.groups.values():
        if group.retired:
            continue
        stamps.extend(message.published_at for _, message, _ in group.ready)
        # The log is in offset order: the first offset at or past the cursor waits.
        waiting = next((m for offset, m in state.log.items() if offset >= group.cursor), None)
        if waiting is not None:
            stamps.append(waiting.published_at)
    return min(stamps, default=None)


def drop_if_retired(topic: Topic, name: str) -> None:
    group = topic.groups.get(name)
    if group is not None and group.retired and not group.pending:
        del topic.groups[name]


def next_for(topic: Topic, group: Group) -> tuple[int, Message, int] | None:
    """The next message for the group, with the attempt this delivery will be."""
    if group.ready:
        offset, message, attempts = group.ready.popleft()
        return offset, message, attempts + 1
    cursor = group.cursor
    stored = topic.log.get(cursor)
    if stored is not None:  # the usual case: the cursor is on a message of the log
        group.cursor = cursor + 1
        return cursor, stored, 1
    group.cursor = max(cursor, topic.first_offset)
    while group.cursor < topic.next_offset:
        offset = group.cursor
        group.cursor += 1
        stored = topic.log.get(offset)
        if stored is not None:
            return offset, stored, 1
    return None


#: The open named stores: name -> (store, how many open brokers use it).
_named_stores: dict[str, tuple[Store, int]] = {}
_named_lock = threading.Lock()


def open_store(name: str, clock: Clock | None, shown: str = "") -> Store:
    """The store of ``memory://name`` (a private one for an empty name), shared by
    every open broker of that name in this process, sync and async alike; each call
    counts one more user until :func:`release_store`.

    The first broker to open a name sets the store's clock (``clock``, or real time);
    a later one may pass none, or the same clock. ``shown``: the URL as an error may
    quote it (its secrets masked; default ``memory://name``).

    :raises InvalidOption: ``clock`` is not the clock the open store runs on.
    """
    if not name:
        return Store(clock or SystemClock())
    with _named_lock:
        found = _named_stores.get(name)
        if found is None:
            store = Store(clock or SystemClock())
            _named_stores[name] = (store, 1)
            return store
        store, users = found
        if clock is not None and not _same_clock(clock, store.clock):
            raise InvalidOption(
                f"{shown or 'memory://' + name} is open already with another clock "
                f"({type(store.clock).__name__}): a named store runs on one clock; pass "
                "the same clock object, or none, to every connection to it while one is open"
            )
        _named_stores[name] = (store, users + 1)
        return store


def release_store(name: str, store: Store) -> None:
    """One user of ``memory://name`` is done with ``store``: when it was the last,
    the name is free and the store's messages are gone (the next broker of that name
    gets a new, empty store)."""
    if not name:
        return
    with _named_lock:
        found = _named_stores.get(name)
        if found is None or found[0] is not store:
            return
        users = found[1] - 1
        if users:
            _named_stores[name] = (store, users)
        else:
            del _named_stores[name]


def _same_clock(given: Clock, running: Clock) -> bool:
    """Whether ``given`` is the clock a store runs on (any real-time clock is)."""
    real = isinstance(given, SystemClock) and isinstance(running, SystemClock)
    return given is running or real
