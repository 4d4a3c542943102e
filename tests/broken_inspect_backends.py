"""Deliberately broken memory backends of the management promises: inspect, topics()
and purge (see :mod:`tests.broken_backends`, whose registry lists them with the others)."""

from __future__ import annotations

import dataclasses

from brokerkit import TopicInfo
from brokerkit._topics import dead_letter_topic_of
from brokerkit.backends.memory import MemoryBroker


class PurgesPrefixedTopics(MemoryBroker):
    """purge(topic) also empties every topic whose name starts with it."""

    def _purge(self, topic: str) -> int:
        removed = super()._purge(topic)
        for name in list(self._store.topics):
            if name != topic and name.startswith(topic):
                super()._purge(name)
        return removed


class PurgeDropsInFlight(MemoryBroker):
    """purge(topic) also takes back the deliveries already handed out."""

    def _purge(self, topic: str) -> int:
        removed = super()._purge(topic)
        with self._store.lock:
            state = self._store.topics.get(topic)
            for group in state.groups.values() if state else ():
                group.pending.clear()
        return removed


class InspectCountsPrefixedTopics(MemoryBroker):
    """inspect(topic) adds up every topic whose name starts with it."""

    def _inspect(self, topic: str) -> TopicInfo:
        info = super()._inspect(topic)
        others = [
            super(InspectCountsPrefixedTopics, self)._inspect(name)
            for name in list(self._store.topics)
            if name != topic and name.startswith(topic) and not name.endswith(".dlq")
        ]
        return dataclasses.replace(
            info,
            length=info.length + sum(o.length for o in others),
            in_flight=info.in_flight + sum(o.in_flight for o in others),
        )


class InspectMiscountsInFlight(MemoryBroker):
    """inspect() counts only one delivery in flight per group."""

    def _inspect(self, topic: str) -> TopicInfo:
        info = super()._inspect(topic)
        return dataclasses.replace(info, in_flight=min(info.in_flight, len(info.groups)))


class ListsNoTopics(MemoryBroker):
    """topics() lists nothing."""

    def _list_topics(self) -> list[str]:
        return []


class ListsNoDelayedOnlyTopics(MemoryBroker):
    """topics() leaves out a topic whose only messages are delayed publishes."""

    def _list_topics(self) -> list[str]:
        with self._store.lock:
            topics = self._store.topics.items()
            return sorted(name for name, state in topics if state.log or state.groups)


class StaleWaitingAge(MemoryBroker):
    """inspect reports a waiting age even when nothing waits."""

    def _inspect(self, topic: str) -> TopicInfo:
        info = super()._inspect(topic)
        return dataclasses.replace(info, oldest_waiting_age=info.oldest_waiting_age or 1.0)


class ListsNoDeadLetterTopics(MemoryBroker):
    """topics() leaves out the dead-letter topics."""

    def _list_topics(self) -> list[str]:
        return [t for t in super()._list_topics() if not t.endswith(".dlq")]


class WaitingAgeCountsInFlight(MemoryBroker):
    """inspect reports a waiting age while nothing waits but deliveries are out."""

    def _inspect(self, topic: str) -> TopicInfo:
        info = super()._inspect(topic)
        if info.oldest_waiting_age is None and info.in_flight:
            return dataclasses.replace(info, oldest_waiting_age=0.5)
        return info


class CountsSettledDeadLetters(MemoryBroker):
    """inspect counts every stored dead letter, those already read and acked too."""

    def _inspect(self, topic: str) -> TopicInfo:
        info = super()._inspect(topic)
        with self._store.lock:
            dead = self._store.topics.get(self.dead_letter_topic(topic))
            stored = len(dead.log) if dead else 0
        return dataclasses.replace(info, dead_lettered=stored)


class OldestInFlightAlwaysNone(MemoryBroker):
    """inspect's oldest_in_flight_age is never the age of a delivery: None when nothing
    is out, 12345 s (older than anything the test handed out) while anything is."""

    def _inspect(self, topic: str) -> TopicInfo:
        info = super()._inspect(topic)
        return dataclasses.replace(info, oldest_in_flight_age=12345.0 if info.in_flight else None)


class ListsOnlyWaitingTopics(MemoryBroker):
    """topics() lists a topic only while a message of it waits (or is held for later):
    one whose messages are all handed out, unsettled, is left out."""

    def _list_topics(self) -> list[str]:
        with self._store.lock:
            return sorted(
                name
                for name, state in self._store.topics.items()
                if state.scheduled
                or (not state.groups and state.log)
                or any(
                    g.ready or g.delayed or any(o >= g.cursor for o in state.log)
                    for g in state.groups.values()
                )
            )


class LagAlwaysZero(MemoryBroker):
    """inspect reports every group's lag as 0, and its consumers as holding nothing."""

    def _inspect(self, topic: str) -> TopicInfo:
        info = super()._inspect(topic)
        groups = tuple(
            dataclasses.replace(
                g, lag=0, consumers=tuple(dataclasses.replace(c, pending=0) for c in g.consumers)
            )
            for g in info.groups
        )
        return dataclasses.replace(info, groups=groups)


class DeadLetteredCountsAnyGroup(MemoryBroker):
    """inspect's dead_lettered is what the dead-letter topic's least-behind group has
    not settled, whatever the group: a tail from "latest" that read the newest dead
    letter clears the count of those nobody dealt with."""

    def _inspect(self, topic: str) -> TopicInfo:
        info = super()._inspect(topic)
        dead = super()._inspect(dead_letter_topic_of(topic))
        counts = [info.dead_lettered, *((g.lag or 0) + g.pending for g in dead.groups)]
        return dataclasses.replace(info, dead_lettered=min(counts))


class DeadLetteredIgnoresTheDlqGroup(MemoryBroker):
    """inspect's dead_lettered counts by the dead-letter topic's default group only:
    what ``brokerkit dlq`` (the ``brokerkit-dlq`` group) read and acked still counts."""

    def _inspect(self, topic: str) -> TopicInfo:
        info = super()._inspect(topic)
        dead = super()._inspect(dead_letter_topic_of(topic))
        counts = [
            dead.length,
            *((g.lag or 0) + g.pending for g in dead.groups if g.name == "default"),
        ]
        return dataclasses.replace(info, dead_lettered=min(counts))


class DeadLetteredNeverDropsWithoutLag(MemoryBroker):
    """inspect reports no group's lag (None, ``GroupInfo``'s default, as a backend that
    never fills it in) and dead_lettered counts every stored dead letter, those read
    and acked too: no declaration that the lag cannot be told, so no upper bound."""

    def _inspect(self, topic: str) -> TopicInfo:
        info = super()._inspect(topic)
        groups = tuple(dataclasses.replace(g, lag=None) for g in info.groups)
        with self._store.lock:
            dead = self._store.topics.get(self.dead_letter_topic(topic))
            stored = len(dead.log) if dead else 0
        return dataclasses.replace(info, groups=groups, dead_lettered=stored)


class ConsumersNamedByConnection(MemoryBroker):
    """inspect lists a group's consumers under names of its own (one per connection,
    as a backend that names its server-side consumers would), not the ``consumer=``
    each subscribed with."""

    def _inspect(self, topic: str) -> TopicInfo:
        info = super()._inspect(topic)
        groups = tuple(
            dataclasses.replace(
                g,
                consumers=tuple(
                    dataclasses.replace(c, name=f"conn-{n}") for n, c in enumerate(g.consumers)
                ),
            )
            for g in info.groups
        )
        return dataclasses.replace(info, groups=groups)
