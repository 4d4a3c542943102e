"""Deliberately broken memory backends, continued from :mod:`tests.broken_backends`
(which registers them all): those of topic and group names, groups and replay, and
of what a backend owes every caller whatever its capabilities."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from brokerkit import Capability, Delivery, Message
from brokerkit._broker import DEFAULT_GROUP
from brokerkit._subscription import Subscription
from brokerkit.backends.memory import MemoryBroker
from brokerkit.backends.memory.store import Group, Topic

#: What :class:`TopicNamesMerge` reads ``/``, ``:`` and ``@`` in a topic name as.
_DOTTED = str.maketrans("/:@", "...")
#: The characters of a name :class:`TruncatesLongNames` keeps.
_KEPT = 150


class TopicNamesMerge(MemoryBroker):
    """Topics are stored under their names with ``/``, ``:`` and ``@`` read as ``.``, as
    a backend that maps topics onto dotted subjects might: ``a/b`` and ``a.b`` are one
    topic."""

    def _publish(self, topic: str, messages: Sequence[Message]) -> None:
        super()._publish(topic.translate(_DOTTED), messages)

    def _subscribe(self, subscription: Subscription) -> None:
        with _stored_as_dotted(subscription):
            super()._subscribe(subscription)

    def _sources(self, subscription: Subscription) -> Iterator[tuple[str, Topic, Group]]:
        with _stored_as_dotted(subscription):
            yield from super()._sources(subscription)


class NewGroupsDefaultToLatest(MemoryBroker):
    """A new named group that gives no start reads only what is published after it
    subscribed (as ``XGROUP CREATE ... $`` would), not the topic's history."""

    def _group(self, topic: Topic, name: str, start: str | None) -> Group:
        named = name != DEFAULT_GROUP and name not in topic.groups
        return super()._group(topic, name, start or ("latest" if named else None))


class GroupsShareOneLine(MemoryBroker):
    """Every group of a topic reads one line of messages, that of the topic's first
    group: each message goes to one group, not to every group."""

    def _group(self, topic: Topic, name: str, start: str | None) -> Group:
        first = next(iter(topic.groups.values()), None)
        return first if first is not None else super()._group(topic, name, start)


class EarliestStartsWhereOthersAre(MemoryBroker):
    """A new group with start="earliest" starts where the topic's other groups have
    read to (the oldest message still unread), not at its first kept message."""

    def _group(self, topic: Topic, name: str, start: str | None) -> Group:
        others = [g.cursor for g in topic.groups.values()]
        new = name not in topic.groups
        group = super()._group(topic, name, start)
        if new and start == "earliest" and others:
            group.cursor = min(others)
        return group


class ExpiryIgnoresMaxDeliveries(MemoryBroker):
    """A lease that runs out is always redelivered: only nacks count toward
    max_deliveries, so a message that crashes every consumer is never dead-lettered."""

    def _expire(self, now: float) -> None:
        for _, group, lease in self._store.expired(now):
            group.ready.append((lease.offset, lease.message, lease.attempt))


class DropsWhatNobodyReads(MemoryBroker):
    """Declares PERSISTENT, yet drops a message published to a topic no group reads
    yet, as pub/sub does: it does not wait for its first consumer."""

    def _append(self, topic: Topic, messages: Sequence[Message]) -> None:
        if topic.groups:
            super()._append(topic, messages)


class PatternDeliveriesNameThePattern(MemoryBroker):
    """A pattern subscription's deliveries name the pattern as their topic (as a
    reader of Redis's ``pmessage`` that takes the wrong field would), not the concrete
    topic each message was published to."""

    def _take(self, subscription: Subscription, limit: int, now: float) -> list[Delivery]:
        taken = super()._take(subscription, limit, now)
        if subscription.pattern:
            for delivery in taken:
                delivery.message = dataclasses.replace(delivery.message, topic=subscription.topic)
        return taken


class AcceptsUndeclaredDelay(MemoryBroker):
    """Declares no DELAY, yet holds a delayed publish or nack instead of refusing it."""

    capabilities = MemoryBroker.capabilities & ~Capability.DELAY

    @classmethod
    def require(cls, capability: Capability, what: str) -> None:
        if capability is not Capability.DELAY:
            super().require(capability, what)


class PublishesBatchOneByOne(MemoryBroker):
    """publish_many sends each body as it encodes it, one publish at a time: a batch
    with a body it cannot encode has sent those before it when it raises."""

    def publish_many(self, topic: str, bodies: Iterable[Any], **kwargs: Any) -> list[str]:
        if isinstance(bodies, (str, bytes, dict)):
            return super().publish_many(topic, bodies, **kwargs)
        one = super().publish_many
        return [one(topic, [body], **kwargs)[0] for body in bodies]


class LatestMeansEarliest(MemoryBroker):
    """A new group with start="latest" reads the whole history."""

    @staticmethod
    def _start_offset(topic: Topic, start: str | None) -> int:
        return MemoryBroker._start_offset(topic, "earliest" if start == "latest" else start)


class StartRewindsExistingGroups(MemoryBroker):
    """Joining an existing group with start="earliest" rewinds it to the beginning."""

    def _group(self, topic: Topic, name: str, start: str | None) -> Group:
        group = super()._group(topic, name, start)
        if start is not None:
            group.cursor = self._start_offset(topic, start)
        return group


class AcceptsUndeclaredCapabilities(MemoryBroker):
    """Declares no PATTERNS, yet accepts pattern subscriptions without a word."""

    capabilities = MemoryBroker.capabilities & ~Capability.PATTERNS

    @classmethod
    def require(cls, capability: Capability, what: str) -> None:
        return None


class DefaultGroupPerSubscriber(MemoryBroker):
    """A subscription that names no group gets a group of its own, named after its
    consumer, where it should join the topic's one default group: workers that each
    ``consume("jobs")`` each get every job."""

    def _subscribe(self, subscription: Subscription) -> None:
        if subscription.group == DEFAULT_GROUP and not subscription.pattern:
            subscription.group = f"{DEFAULT_GROUP}-{subscription.consumer}"
        super()._subscribe(subscription)


class HeaderNamesFolded(MemoryBroker):
    """Header names are stored lowercased, as a transport whose headers are
    case-insensitive (HTTP's, say) keeps them: ``Trace-Id`` arrives as ``trace-id``, and
    of two names that differ only in case one is lost."""

    def _publish(self, topic: str, messages: Sequence[Message]) -> None:
        super()._publish(
            topic,
            [
                dataclasses.replace(m, headers={k.lower(): v for k, v in m.headers.items()})
                for m in messages
            ],
        )


class TruncatesLongNames(MemoryBroker):
    """Topic and group names are stored cut to their first 150 characters, as a backend
    that shortens names to fit a key or subject limit might: two long names that differ
    only past that are one topic (or group)."""

    def _publish(self, topic: str, messages: Sequence[Message]) -> None:
        super()._publish(topic[:_KEPT], messages)

    def _subscribe(self, subscription: Subscription) -> None:
        with _stored_as(subscription, lambda name: name[:_KEPT]):
            super()._subscribe(subscription)

    def _sources(self, subscription: Subscription) -> Iterator[tuple[str, Topic, Group]]:
        with _stored_as(subscription, lambda name: name[:_KEPT]):
            yield from super()._sources(subscription)


class PatternsSkipDeadLetterTopics(MemoryBroker):
    """Pattern subscriptions never read a dead-letter topic, as on a backend that keeps
    dead letters apart from topics, where its pattern subscriptions do not look."""

    def _sources(self, subscription: Subscription) -> Iterator[tuple[str, Topic, Group]]:
        for source in super()._sources(subscription):
            if not (subscription.pattern and source[0].endswith(".dlq")):
                yield source


@contextlib.contextmanager
def _stored_as_dotted(subscription: Subscription) -> Iterator[None]:
    """While it lasts, ``subscription`` (of one topic) names its topic as stored."""
    with _stored_as(subscription, lambda name: name.translate(_DOTTED), groups=False):
        yield


@contextlib.contextmanager
def _stored_as(
    subscription: Subscription, stored: Callable[[str], str], groups: bool = True
) -> Iterator[None]:
    """While it lasts, ``subscription`` (of one topic) names its topic, and with
    ``groups`` its group, as ``stored`` maps them."""
    topic, group = subscription.topic, subscription.group
    if not subscription.pattern:
        subscription.topic = stored(topic)
        if groups:
            subscription.group = stored(group)
    try:
        yield
    finally:
        subscription.topic, subscription.group = topic, group
