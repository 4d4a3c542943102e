"""Deliberately broken memory backends: each breaks one promise the contract suite checks.

They are never registered; tests build them with ``Broken.from_url("memory://name")``.
This module holds those of publishing, delivery order and subscriptions, and the
registry of them all; those of settling are in :mod:`tests.broken_settle_backends`,
of inspect, topics() and purge in :mod:`tests.broken_inspect_backends`, and of delays
in :mod:`tests.broken_delay_backends`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

from brokerkit import Capability, Delivery, Message
from brokerkit._subscription import MAX_FETCH_WAIT, Subscription
from brokerkit.backends.memory import MemoryBroker
from brokerkit.backends.memory.store import Group, PatternState, Topic
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
from tests.broken_inspect_backends import (
    InspectCountsPrefixedTopics,
    InspectMiscountsInFlight,
    ListsNoDeadLetterTopics,
    ListsNoDelayedOnlyTopics,
    ListsNoTopics,
    PurgeDropsInFlight,
    PurgesPrefixedTopics,
    StaleWaitingAge,
    WaitingAgeCountsInFlight,
)
from tests.broken_settle_backends import (
    AckedComeBackLate,
    BatchAckSettlesOnlyTheFirst,
    DeadLettersLoseCustomContentType,
    DeadLettersLoseHeaders,
    DropsOnNack,
    ExtendIgnoresExpiry,
    ExtendIgnoresSeconds,
    ExtendKeepsTheOldDeadline,
    GroupsShareRequeues,
    HandsOutLeasesEarly,
    HoldsLeasesTooLong,
    IgnoresNackReason,
    IgnoresVisibilityTimeout,
    LateRejectDeadLetters,
    LateRequeueDuplicates,
    RedeliversAcked,
    RejectDropsReason,
    RejectRequeuesUnderMaxDeliveries,
    StaleNamesEveryDelivery,
)


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


class DuplicatesToCompetitors(MemoryBroker):
    """Every new message is handed out twice: to a consumer, and again to the next one."""

    @staticmethod
    def _next(topic: Topic, group: Group) -> tuple[int, Message, int] | None:
        item = MemoryBroker._next(topic, group)
        if item is not None and item[2] == 1:
            offset, message, _ = item
            group.ready.append((offset, message, 0))
        return item


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


class AcceptsUndeclaredCapabilities(MemoryBroker):
    """Declares no PATTERNS, yet accepts pattern subscriptions without a word."""

    capabilities = MemoryBroker.capabilities & ~Capability.PATTERNS

    @classmethod
    def require(cls, capability: Capability, what: str) -> None:
        return None


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
