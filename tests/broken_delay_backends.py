"""Deliberately broken memory backends of the delay promises (see
:mod:`tests.broken_backends`, whose registry lists them with the others)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from brokerkit import Message
from brokerkit.backends.memory import MemoryBroker
from brokerkit.backends.memory.store import Group, Lease, Topic


class _TampersWithRetries(MemoryBroker):
    """A memory broker whose nacks requeue through :meth:`_retry`, which a broken
    backend overrides to change the lease or the delay it requeues with."""

    def _retry(self, lease: Lease, delay: float | None) -> tuple[Lease, float | None]:
        return lease, delay

    def _requeue_or_dead_letter(
        self,
        topic_name: str,
        group: Group,
        lease: Lease,
        requeue: bool,
        reason: str,
        delay: float | None = None,
    ) -> None:
        if requeue:
            lease, delay = self._retry(lease, delay)
        super()._requeue_or_dead_letter(topic_name, group, lease, requeue, reason, delay)


class DeliversDelayedEarly(_TampersWithRetries):
    """Holds delayed publishes and retries for half their delay only."""

    def _hold(self, topic: Topic, messages: Sequence[Message], due: float) -> None:
        now = self._store.clock.now()
        super()._hold(topic, messages, now + (due - now) / 2)

    def _retry(self, lease: Lease, delay: float | None) -> tuple[Lease, float | None]:
        return lease, None if delay is None else delay / 2


class IgnoresNackDelay(_TampersWithRetries):
    """A nack with a delay requeues at once, as if no delay were given."""

    def _retry(self, lease: Lease, delay: float | None) -> tuple[Lease, float | None]:
        return lease, None


class LosesDelayedPublishes(MemoryBroker):
    """A delayed publish is held, counted as scheduled, and dropped when it is due."""

    def _release_due(self, now: float) -> None:
        self._store.take_due(now)


class ForgetsDelayedAttempts(_TampersWithRetries):
    """A delayed retry comes back with the attempt it had, not one more."""

    def _retry(self, lease: Lease, delay: float | None) -> tuple[Lease, float | None]:
        if delay:
            lease = dataclasses.replace(lease, attempt=lease.attempt - 1)
        return lease, delay


class ReversesDelayedBatch(MemoryBroker):
    """A delayed publish_many comes out in reverse order."""

    def _hold(self, topic: Topic, messages: Sequence[Message], due: float) -> None:
        super()._hold(topic, list(reversed(messages)), due)


class ReleasesAllHeldOnFirstDue(MemoryBroker):
    """Once one delayed publish is due, every delayed publish is released with it, early."""

    def _release_due(self, now: float) -> None:
        store = self._store
        due = store.next_due()
        if due is not None and now >= due:
            held = (item[0] for topic in store.topics.values() for item in topic.scheduled)
            now = max(now, max(held, default=now))
        super()._release_due(now)


class DelayedRetryDiesWithConsumer(MemoryBroker):
    """A nack(delay=) retry is dropped when the broker of the consumer that nacked it
    closes before it is due."""

    def _close(self) -> None:
        with self._store.lock:
            for topic in self._store.topics.values():
                for group in topic.groups.values():
                    group.delayed.clear()
        super()._close()


class DelayedPublishDiesWithPublisher(MemoryBroker):
    """A delayed publish is dropped when its publisher's broker closes before it is due."""

    def _close(self) -> None:
        with self._store.lock:
            for topic in self._store.topics.values():
                topic.scheduled.clear()
        super()._close()
