"""Deliberately broken memory backends of the delay promises (see
:mod:`tests.broken_backends`, whose registry lists them with the others)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

from brokerkit import Message, TopicInfo
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


class DelayedPublishRestamped(MemoryBroker):
    """A delayed publish is delivered with the time it came due as its published_at
    (an hour ahead of the wall clock, as a backend whose clock runs ahead would stamp it),
    not the publish call's."""

    def _release_due(self, now: float) -> None:
        for topic, messages, maxlen in self._store.take_due(now):
            later = time.time() + 3600
            stamped = [dataclasses.replace(m, published_at=later) for m in messages]
            self._append_capped(topic, stamped, maxlen)


class DelayedRetryCountsInFlight(MemoryBroker):
    """inspect counts a delayed retry as in flight, overall and in its group's pending,
    as well as scheduled."""

    def _inspect(self, topic: str) -> TopicInfo:
        info = super()._inspect(topic)
        with self._store.lock:
            state = self._store.topics.get(topic)
            held = {n: len(g.delayed) for n, g in state.groups.items()} if state else {}
        groups = tuple(
            dataclasses.replace(g, pending=g.pending + held.get(g.name, 0)) for g in info.groups
        )
        return dataclasses.replace(
            info, in_flight=info.in_flight + sum(held.values()), groups=groups
        )


class DelayedPublishToFirstGroupOnly(MemoryBroker):
    """A due delayed publish goes to the line of the topic's first group only, not to
    the topic: the other groups never get it."""

    def _release_due(self, now: float) -> None:
        for topic, messages, maxlen in self._store.take_due(now):
            if topic.groups:
                first = next(iter(topic.groups.values()))
                first.ready.extend((-1, m, 0) for m in messages)
            else:
                self._append_capped(topic, messages, maxlen)


class DelayedRetryLeaksToOtherGroups(MemoryBroker):
    """A delayed retry of one group is also handed, when due, to every other group of
    the topic, as a first delivery."""

    def _requeue_or_dead_letter(
        self,
        topic_name: str,
        group: Group,
        lease: Lease,
        requeue: bool,
        reason: str,
        delay: float | None = None,
    ) -> None:
        options = self.options if lease.options is None else lease.options
        limit = options.max_deliveries
        if requeue and delay and (limit is None or lease.attempt < limit):
            due = self._store.clock.now() + delay
            for other in self._store.topics[topic_name].groups.values():
                if other is not group:
                    self._store.hold_retry(other, lease.offset, lease.message, 0, due)
        super()._requeue_or_dead_letter(topic_name, group, lease, requeue, reason, delay)


class DelayedRetryPastMaxDeliveries(MemoryBroker):
    """A delayed nack holds the message for another attempt even once it has reached
    ``max_deliveries``, as a backend that checks the limit only on an immediate
    requeue would: it is redelivered, not dead-lettered."""

    def _requeue_or_dead_letter(
        self,
        topic_name: str,
        group: Group,
        lease: Lease,
        requeue: bool,
        reason: str,
        delay: float | None = None,
    ) -> None:
        if requeue and delay and not group.retired:
            due = self._store.clock.now() + delay
            self._store.hold_retry(group, lease.offset, lease.message, lease.attempt, due)
            return
        super()._requeue_or_dead_letter(topic_name, group, lease, requeue, reason, delay)


class DelayedPublishDropsHeaders(MemoryBroker):
    """A delayed publish is held without its headers, as a backend that holds a
    compact form of the message (its id and body) would: it arrives with none."""

    def _publish_delayed(self, topic: str, messages: Sequence[Message], delay: float) -> None:
        bare = [dataclasses.replace(m, headers={}) for m in messages]
        super()._publish_delayed(topic, bare, delay)


class DelayedRetryLosesContentType(MemoryBroker):
    """A delayed retry comes back labelled ``application/octet-stream``, as a backend
    that holds the payload without its envelope would."""

    def _requeue_or_dead_letter(
        self,
        topic_name: str,
        group: Group,
        lease: Lease,
        requeue: bool,
        reason: str,
        delay: float | None = None,
    ) -> None:
        if requeue and delay:
            raw = dataclasses.replace(lease.message, content_type="application/octet-stream")
            lease = dataclasses.replace(lease, message=raw)
        super()._requeue_or_dead_letter(topic_name, group, lease, requeue, reason, delay)
