"""Deliberately broken memory backends: each breaks one promise the contract suite checks.

They are never registered; tests build them with ``Broken.from_url("memory://name")``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from typing import ClassVar

from brokerkit import Capability, Delivery, Message, StaleDelivery, TopicInfo
from brokerkit._subscription import MAX_FETCH_WAIT, Subscription
from brokerkit.backends.memory import MemoryBroker
from brokerkit.backends.memory.store import Group, Lease, PatternState, Topic
from tests.broken_delay_backends import (
    DelayedPublishDiesWithPublisher,
    DelayedRetryDiesWithConsumer,
    DeliversDelayedEarly,
    ForgetsDelayedAttempts,
    IgnoresNackDelay,
    LosesDelayedPublishes,
    ReleasesAllHeldOnFirstDue,
    ReversesDelayedBatch,
)


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


class LosesContentType(MemoryBroker):
    """A content type other than the built-in ones is delivered as octet-stream."""

    def _publish(self, topic: str, messages: Sequence[Message]) -> None:
        known = ("application/json", "application/octet-stream", "text/plain")
        super()._publish(
            topic,
            [
                m
                if m.content_type.startswith(known)
                else dataclasses.replace(m, content_type="application/octet-stream")
                for m in messages
            ],
        )


class TruncatesLargeBodies(MemoryBroker):
    """Payloads are cut at two mebibytes."""

    def _publish(self, topic: str, messages: Sequence[Message]) -> None:
        limit = 2 * 1024 * 1024
        super()._publish(
            topic, [dataclasses.replace(m, payload=m.payload[:limit]) for m in messages]
        )


class ForgetsPublishTime(MemoryBroker):
    """published_at is delivered as 0."""

    def _publish(self, topic: str, messages: Sequence[Message]) -> None:
        super()._publish(topic, [dataclasses.replace(m, published_at=0.0) for m in messages])


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


class IgnoresMaxlen(MemoryBroker):
    """maxlen is accepted and ignored: the topic grows without bound."""

    def _append(self, topic: Topic, messages: Sequence[Message]) -> None:
        for message in messages:
            topic.log[topic.next_offset] = message
            topic.next_offset += 1


class PatternsMatchPrefixes(MemoryBroker):
    """A pattern matches any topic that starts with a match (an unanchored glob)."""

    def _sources(self, subscription: Subscription) -> Iterator[tuple[str, Topic, Group]]:
        if not subscription.pattern:
            yield from super()._sources(subscription)
            return
        original = subscription.topic
        subscription.topic = original + "*"
        try:
            yield from super()._sources(subscription)
        finally:
            subscription.topic = original


class KeepsPrefetchedOnClose(MemoryBroker):
    """Closing a subscription keeps what it prefetched leased until the timeout."""

    def _unsubscribe(self, subscription: Subscription, unreturned: list[Delivery]) -> None:
        super()._unsubscribe(subscription, [])


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


class AcceptsUndeclaredCapabilities(MemoryBroker):
    """Declares no PATTERNS, yet accepts pattern subscriptions without a word."""

    capabilities = MemoryBroker.capabilities & ~Capability.PATTERNS

    @classmethod
    def require(cls, capability: Capability, what: str) -> None:
        return None


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


class IgnoresPrefetchBytes(MemoryBroker):
    """A fetch takes ``prefetch`` messages, whatever the core asks for: prefetch_bytes
    bounds nothing."""

    def _fetch(
        self, subscription: Subscription, max_messages: int, timeout: float
    ) -> list[Delivery]:
        return super()._fetch(subscription, subscription.prefetch, timeout)


class PatternSubscriptionsCompete(MemoryBroker):
    """Pattern subscriptions without a group share one group per pattern: each message
    goes to one of them."""

    def _subscribe(self, subscription: Subscription) -> None:
        super()._subscribe(subscription)
        state = subscription.state
        if isinstance(state, PatternState) and state.private:
            subscription.state = dataclasses.replace(
                state, group=f"pattern-shared:{subscription.topic}", private=False
            )


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


class BrokerCloseKeepsPrefetched(MemoryBroker):
    """Closing the broker (not a subscription) keeps what its subscriptions prefetched
    leased until the visibility timeout."""

    def _unsubscribe(self, subscription: Subscription, unreturned: list[Delivery]) -> None:
        super()._unsubscribe(subscription, [] if self.closed else unreturned)


class DropsFetchedOnClose(MemoryBroker):
    """A fetch that its subscription's close overtakes drops what it leased, as a network
    backend that discards a late reply would: the messages stay leased, unseen, until
    the visibility timeout."""

    def _fetch(
        self, subscription: Subscription, max_messages: int, timeout: float
    ) -> list[Delivery]:
        fetched = super()._fetch(subscription, max_messages, timeout)
        # The reply's round trip, which a close from another thread overtakes.
        if fetched and subscription._closed.wait(MAX_FETCH_WAIT):
            return []
        return fetched


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


class PatternStartAlwaysLatest(MemoryBroker):
    """A pattern subscription with start="earliest" reads only what comes after it."""

    def _subscribe(self, subscription: Subscription) -> None:
        super()._subscribe(subscription)
        state = subscription.state
        if isinstance(state, PatternState):
            with self._store.lock:
                starts = {n: t.next_offset for n, t in self._store.topics.items()}
            subscription.state = dataclasses.replace(state, starts=starts)


class PatternDefaultEarliest(MemoryBroker):
    """A pattern subscription with no start reads every matching topic's history."""

    def _subscribe(self, subscription: Subscription) -> None:
        super()._subscribe(subscription)
        state = subscription.state
        if isinstance(state, PatternState) and subscription.start is None:
            subscription.state = dataclasses.replace(state, starts={})


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


class WaitingAgeCountsInFlight(MemoryBroker):
    """inspect reports a waiting age while nothing waits but deliveries are out."""

    def _inspect(self, topic: str) -> TopicInfo:
        info = super()._inspect(topic)
        if info.oldest_waiting_age is None and info.in_flight:
            return dataclasses.replace(info, oldest_waiting_age=0.5)
        return info


#: Every broken backend, by the name its test class gets.


BROKEN_BACKENDS: dict[str, type[MemoryBroker]] = {
    "drops_on_nack": DropsOnNack,
    "lists_no_topics": ListsNoTopics,
    "lists_no_delayed_only_topics": ListsNoDelayedOnlyTopics,
    "stale_waiting_age": StaleWaitingAge,
    "redelivers_acked": RedeliversAcked,
    "reorders": Reorders,
    "leaks_across_topics": LeaksAcrossTopics,
    "ignores_visibility_timeout": IgnoresVisibilityTimeout,
    "duplicates_to_competitors": DuplicatesToCompetitors,
    "hands_out_leases_early": HandsOutLeasesEarly,
    "holds_leases_too_long": HoldsLeasesTooLong,
    "extend_keeps_the_old_deadline": ExtendKeepsTheOldDeadline,
    "extend_ignores_expiry": ExtendIgnoresExpiry,
    "batch_ack_settles_only_the_first": BatchAckSettlesOnlyTheFirst,
    "late_reject_dead_letters": LateRejectDeadLetters,
    "late_requeue_duplicates": LateRequeueDuplicates,
    "reject_requeues_under_max_deliveries": RejectRequeuesUnderMaxDeliveries,
    "dead_letters_lose_headers": DeadLettersLoseHeaders,
    "groups_share_requeues": GroupsShareRequeues,
    "latest_means_earliest": LatestMeansEarliest,
    "start_rewinds_existing_groups": StartRewindsExistingGroups,
    "loses_content_type": LosesContentType,
    "truncates_large_bodies": TruncatesLargeBodies,
    "forgets_publish_time": ForgetsPublishTime,
    "purges_prefixed_topics": PurgesPrefixedTopics,
    "purge_drops_in_flight": PurgeDropsInFlight,
    "inspect_counts_prefixed_topics": InspectCountsPrefixedTopics,
    "inspect_miscounts_in_flight": InspectMiscountsInFlight,
    "ignores_maxlen": IgnoresMaxlen,
    "patterns_match_prefixes": PatternsMatchPrefixes,
    "keeps_prefetched_on_close": KeepsPrefetchedOnClose,
    "accepts_undeclared_capabilities": AcceptsUndeclaredCapabilities,
    "delivers_delayed_early": DeliversDelayedEarly,
    "ignores_nack_delay": IgnoresNackDelay,
    "loses_delayed_publishes": LosesDelayedPublishes,
    "forgets_delayed_attempts": ForgetsDelayedAttempts,
    "ignores_nack_reason": IgnoresNackReason,
    "lists_no_dead_letter_topics": ListsNoDeadLetterTopics,
    "ignores_prefetch_bytes": IgnoresPrefetchBytes,
    "pattern_subscriptions_compete": PatternSubscriptionsCompete,
    "reverses_delayed_batch": ReversesDelayedBatch,
    "releases_all_held_on_first_due": ReleasesAllHeldOnFirstDue,
    "dead_letters_lose_custom_content_type": DeadLettersLoseCustomContentType,
    "broker_close_keeps_prefetched": BrokerCloseKeepsPrefetched,
    "delayed_retry_dies_with_consumer": DelayedRetryDiesWithConsumer,
    "delayed_publish_dies_with_publisher": DelayedPublishDiesWithPublisher,
    "drops_fetched_on_close": DropsFetchedOnClose,
    "acked_come_back_late": AckedComeBackLate,
    "extend_ignores_seconds": ExtendIgnoresSeconds,
    "reject_drops_reason": RejectDropsReason,
    "pattern_start_always_latest": PatternStartAlwaysLatest,
    "pattern_default_earliest": PatternDefaultEarliest,
    "stale_names_every_delivery": StaleNamesEveryDelivery,
    "waiting_age_counts_in_flight": WaitingAgeCountsInFlight,
}
