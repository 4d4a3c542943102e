"""Deliberately broken memory backends of the management promises: inspect, topics()
and purge (see :mod:`tests.broken_backends`, whose registry lists them with the others)."""

from __future__ import annotations

import dataclasses

from brokerkit import TopicInfo
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
