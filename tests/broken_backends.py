"""Deliberately broken memory backends: each breaks one promise the contract suite checks.

They are never registered; tests build them with ``Broken.from_url("memory://name")``.
"""

from __future__ import annotations

from collections.abc import Sequence

from brokerkit import Delivery, Message
from brokerkit.backends.memory import MemoryBroker
from brokerkit.backends.memory.store import Group, Topic


class DropsOnNack(MemoryBroker):
    """nack(requeue=True) forgets the message instead of requeueing it."""

    def _nack(self, deliveries: Sequence[Delivery], requeue: bool) -> None:
        if not requeue:
            super()._nack(deliveries, requeue)
            return
        with self._store.lock:
            for delivery in deliveries:
                self._release_lease(delivery)


class RedeliversAcked(MemoryBroker):
    """ack() puts the message back in the queue, as a lost ack would."""

    def _ack(self, deliveries: Sequence[Delivery]) -> None:
        super()._nack(deliveries, True)


class Reorders(MemoryBroker):
    """Each new message jumps ahead of the one before it while both wait."""

    def _append(self, topic: Topic, messages: Sequence[Message]) -> None:
        for message in messages:
            super()._append(topic, [message])
            last, before = topic.next_offset - 1, topic.next_offset - 2
            undelivered = all(g.cursor <= before for g in topic.groups.values())
            if before in topic.log and undelivered:
                topic.log[last], topic.log[before] = topic.log[before], topic.log[last]


class LeaksAcrossTopics(MemoryBroker):
    """A message published to one topic also lands in every topic that shares its prefix."""

    def _publish(self, topic: str, messages: Sequence[Message]) -> None:
        super()._publish(topic, messages)
        store = self._store
        with store.lock:
            for name, other in list(store.topics.items()):
                if name != topic and name.startswith(topic):
                    self._append(other, messages)
        store.wake()


class IgnoresVisibilityTimeout(MemoryBroker):
    """Leases never run out: a crashed consumer's messages are stuck forever."""

    def _expire(self, now: float) -> None:
        return None

    def _next_expiry(self) -> float | None:
        return None


class DuplicatesToCompetitors(MemoryBroker):
    """Every new message is handed out twice: to a consumer, and again to the next one."""

    @staticmethod
    def _next(topic: Topic, group: Group) -> tuple[int, Message, int] | None:
        item = MemoryBroker._next(topic, group)
        if item is not None and item[2] == 1:
            offset, message, _ = item
            group.ready.append((offset, message, 0))
        return item


#: Every broken backend, with the promise it breaks.
BROKEN_BACKENDS: dict[str, type[MemoryBroker]] = {
    "drops_on_nack": DropsOnNack,
    "redelivers_acked": RedeliversAcked,
    "reorders": Reorders,
    "leaks_across_topics": LeaksAcrossTopics,
    "ignores_visibility_timeout": IgnoresVisibilityTimeout,
    "duplicates_to_competitors": DuplicatesToCompetitors,
}
