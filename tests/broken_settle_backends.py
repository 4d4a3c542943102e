"""Deliberately broken memory backends of the settling promises: ack, nack, extend,
the leases they settle and the dead letters they make (see :mod:`tests.broken_backends`,
whose registry lists them with the others)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from typing import ClassVar

from brokerkit import Capability, Delivery, Message, StaleDelivery
from brokerkit._subscription import Subscription
from brokerkit._topics import dead_letter_topic_of
from brokerkit.backends.memory import MemoryBroker
from brokerkit.backends.memory.store import Group, Lease, Topic, dead_letter_of


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


class IgnoresVisibilityTimeout(MemoryBroker):
    """Leases never run out: a crashed consumer's messages are stuck forever."""

    def _expire(self, now: float) -> None:
        return None

    def _next_expiry(self) -> float | None:
        return None


class _LeaseShift(MemoryBroker):
    """Moves the deadline of every lease it hands out by ``shift`` visibility timeouts."""

    shift: ClassVar[float] = 0.0

    def _take(self, subscription: Subscription, limit: int, now: float) -> list[Delivery]:
        taken = super()._take(subscription, limit, now)
        for delivery in taken:
            lease = self._lease(delivery)
            if lease is not None:
                lease.deadline += self.shift * self.options.visibility_timeout
                self._store.note_deadline(lease.deadline)
        return taken


class HandsOutLeasesEarly(_LeaseShift):
    """A lease runs out after half the visibility timeout."""

    shift = -0.5


class HoldsLeasesTooLong(_LeaseShift):
    """A lease runs out a whole visibility timeout late."""

    shift = 1.0


class ExtendKeepsTheOldDeadline(MemoryBroker):
    """extend() checks the lease but does not move its deadline."""

    def _extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        with self._store.lock:
            self._expire(self._store.clock.now())
            stale = [d for d in deliveries if self._lease(d) is None]
        if stale:
            raise StaleDelivery(stale)


class ExtendIgnoresExpiry(MemoryBroker):
    """extend() of a lease that ran out says nothing."""

    def _extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        with contextlib.suppress(StaleDelivery):
            super()._extend(deliveries, seconds)


class BatchAckSettlesOnlyTheFirst(MemoryBroker):
    """ack(a, b, c) acks a; b and c stay leased."""

    def _ack(self, deliveries: Sequence[Delivery]) -> None:
        super()._ack(deliveries[:1])


class LateRejectDeadLetters(MemoryBroker):
    """A late nack(requeue=False) still puts a copy in the dead-letter topic."""

    def _nack(self, deliveries: Sequence[Delivery], requeue: bool) -> None:
        try:
            super()._nack(deliveries, requeue)
        except StaleDelivery as exc:
            if not requeue:
                with self._store.lock:
                    for delivery in deliveries:
                        lease = Lease(0, delivery.message, "", delivery.attempt, 0.0, 0.0)
                        topic_name = delivery.receipt[0]
                        group = self._store.topics[topic_name].groups[delivery.receipt[1]]
                        self._requeue_or_dead_letter(topic_name, group, lease, False, "rejected")
            raise exc


class LateRequeueDuplicates(MemoryBroker):
    """A late nack(requeue=True) queues the message again, beside the new holder's copy."""

    def _nack(self, deliveries: Sequence[Delivery], requeue: bool) -> None:
        try:
            super()._nack(deliveries, requeue)
        except StaleDelivery:
            if requeue:
                with self._store.lock:
                    for delivery in deliveries:
                        topic_name, group_name, _ = delivery.receipt
                        group = self._store.topics[topic_name].groups[group_name]
                        group.ready.append((-1, delivery.message, delivery.attempt))
            raise


class RejectRequeuesUnderMaxDeliveries(MemoryBroker):
    """With max_deliveries set, nack(requeue=False) requeues until the limit."""

    def _nack(self, deliveries: Sequence[Delivery], requeue: bool) -> None:
        super()._nack(deliveries, requeue or self.options.max_deliveries is not None)


class DeadLettersLoseHeaders(MemoryBroker):
    """A dead letter carries the dead-letter headers but not the message's own."""

    def _append(self, topic: Topic, messages: Sequence[Message]) -> None:
        stripped = [
            dataclasses.replace(
                m, headers={k: v for k, v in m.headers.items() if k.startswith("x-")}
            )
            if "x-original-topic" in m.headers
            else m
            for m in messages
        ]
        super()._append(topic, stripped)


class GroupsShareRequeues(MemoryBroker):
    """A message one group requeues is queued again for every group of the topic."""

    def _nack(self, deliveries: Sequence[Delivery], requeue: bool) -> None:
        super()._nack(deliveries, requeue)
        if requeue:
            with self._store.lock:
                for delivery in deliveries:
                    topic_name, group_name, _ = delivery.receipt
                    for name, group in self._store.topics[topic_name].groups.items():
                        if name != group_name:
                            group.ready.append((-1, delivery.message, delivery.attempt))


class IgnoresNackReason(MemoryBroker):
    """Dead letters always carry the generic reason, never the nack's own."""

    def _nack_with(
        self,
        deliveries: Sequence[Delivery],
        requeue: bool,
        delay: float | None,
        reason: str | None,
    ) -> None:
        super()._nack_with(deliveries, requeue, delay, None)


class DeadLettersLoseCustomContentType(MemoryBroker):
    """A dead letter of a message with a custom content type is stored as octet-stream."""

    def _append(self, topic: Topic, messages: Sequence[Message]) -> None:
        known = ("application/json", "application/octet-stream", "text/plain")
        super()._append(
            topic,
            [
                dataclasses.replace(m, content_type="application/octet-stream")
                if "x-dead-letter-reason" in m.headers and not m.content_type.startswith(known)
                else m
                for m in messages
            ],
        )


class AckedComeBackLate(MemoryBroker):
    """An acked first delivery comes back once, 0.3 s after its lease would have run
    out: within the tolerance a redelivery may lag on real time, so only a listen that
    long after the acks catches it."""

    def _ack(self, deliveries: Sequence[Delivery]) -> None:
        store = self._store
        with store.lock:
            self._expire(store.clock.now())
            leases = [(d, self._lease(d)) for d in deliveries]
            super()._ack(deliveries)
            for delivery, lease in leases:
                if lease is not None and lease.attempt == 1:
                    topic_name, group_name, _ = delivery.receipt
                    group = store.topics[topic_name].groups[group_name]
                    due = lease.deadline + 0.3
                    store.hold_retry(group, lease.offset, lease.message, lease.attempt, due)
        store.wake()


class ExtendIgnoresSeconds(MemoryBroker):
    """extend(seconds) renews for the visibility timeout, whatever seconds says."""

    def _extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        super()._extend(deliveries, self.options.visibility_timeout)


class RejectDropsReason(MemoryBroker):
    """DEAD_LETTER without DELAY, and a nack's reason is dropped: the dead letter says
    "rejected" or "max_deliveries"."""

    capabilities = MemoryBroker.capabilities & ~Capability.DELAY

    def _nack_with(
        self,
        deliveries: Sequence[Delivery],
        requeue: bool,
        delay: float | None,
        reason: str | None,
    ) -> None:
        super()._nack_with(deliveries, requeue, delay, None)


class StaleNamesEveryDelivery(MemoryBroker):
    """A batch ack or nack with one stale delivery names every delivery as stale."""

    def _ack(self, deliveries: Sequence[Delivery]) -> None:
        try:
            super()._ack(deliveries)
        except StaleDelivery:
            raise StaleDelivery(deliveries) from None

    def _nack(self, deliveries: Sequence[Delivery], requeue: bool) -> None:
        try:
            super()._nack(deliveries, requeue)
        except StaleDelivery:
            raise StaleDelivery(deliveries) from None


class SettlingDeletesForEveryGroup(MemoryBroker):
    """Settling a delivery (ack, requeue or reject) deletes its message from the topic
    for every group, as an ``XDEL`` on ack would from a stream: a group that has not
    read it yet never gets it."""

    def _release_lease(self, delivery: Delivery) -> Lease | None:
        lease = super()._release_lease(delivery)
        if lease is not None:
            topic = self._store.topics.get(lease.message.topic)
            if topic is not None:
                topic.log.pop(lease.offset, None)
        return lease


class LastLevelDeadLettersDeeper(MemoryBroker):
    """A topic of the last dead-letter level dead-letters into ``<topic>.dlq``, an
    11-level name no subscribe accepts: its dead letters are out of reach."""

    def _requeue_or_dead_letter(
        self,
        topic_name: str,
        group: Group,
        lease: Lease,
        requeue: bool,
        reason: str,
        delay: float | None = None,
    ) -> None:
        limit = self.options.max_deliveries
        if (requeue and (limit is None or lease.attempt < limit)) or (
            dead_letter_topic_of(topic_name) != topic_name
        ):
            super()._requeue_or_dead_letter(topic_name, group, lease, requeue, reason, delay)
            return
        deeper = topic_name + ".dlq"
        dead = dead_letter_of(lease.message, topic_name, reason, lease.attempt)
        self._append_capped(
            self._store.topic(deeper), [dataclasses.replace(dead, topic=deeper)], None
        )


class LastLevelDropsPastMaxDeliveries(MemoryBroker):
    """A message past ``max_deliveries`` on a topic of the last dead-letter level is
    dropped, as a backend that breaks the loop there would: only a rejection comes back
    as a dead letter."""

    def _requeue_or_dead_letter(
        self,
        topic_name: str,
        group: Group,
        lease: Lease,
        requeue: bool,
        reason: str,
        delay: float | None = None,
    ) -> None:
        limit = self.options.max_deliveries
        at_limit = limit is not None and lease.attempt >= limit
        if requeue and at_limit and dead_letter_topic_of(topic_name) == topic_name:
            return
        super()._requeue_or_dead_letter(topic_name, group, lease, requeue, reason, delay)
