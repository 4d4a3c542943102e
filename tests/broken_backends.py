"""Deliberately broken memory backends: each breaks one promise the contract suite checks.

They are never registered; tests build them with ``Broken.from_url("memory://name")``.
This module holds those of publishing, delivery order and subscriptions, and the
registry of them all; those of settling are in :mod:`tests.broken_settle_backends`,
of inspect, topics() and purge in :mod:`tests.broken_inspect_backends`, and of delays
in :mod:`tests.broken_delay_backends`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Sequence
from typing import ClassVar

from brokerkit import Capability, Delivery, Message
from brokerkit._options import BrokerOptions
from brokerkit._subscription import MAX_FETCH_WAIT, Subscription
from brokerkit.backends.memory import MemoryBroker, MemoryOptions
from brokerkit.backends.memory.store import Group, Lease, PatternState, Topic
from tests.broken_api_backends import (
    AcceptsUndeclaredCapabilities,
    AcceptsUndeclaredDelay,
    DefaultGroupPerSubscriber,
    DropsWhatNobodyReads,
    EarliestStartsWhereOthersAre,
    ExpiryIgnoresMaxDeliveries,
    GroupsShareOneLine,
    HeaderNamesFolded,
    LatestMeansEarliest,
    NewGroupsDefaultToLatest,
    PatternDeliveriesNameThePattern,
    PatternsSkipDeadLetterTopics,
    PublishesBatchOneByOne,
    StartRewindsExistingGroups,
    TopicNamesMerge,
    TruncatesLongNames,
)
from tests.broken_delay_backends import (
    DelayedPublishDiesWithPublisher,
    DelayedPublishDropsHeaders,
    DelayedPublishRestamped,
    DelayedPublishToFirstGroupOnly,
    DelayedRetryCountsInFlight,
    DelayedRetryDiesWithConsumer,
    DelayedRetryLeaksToOtherGroups,
    DelayedRetryLosesContentType,
    DelayedRetryPastMaxDeliveries,
    DeliversDelayedEarly,
    ForgetsDelayedAttempts,
    IgnoresNackDelay,
    LosesDelayedPublishes,
    ReleasesAllHeldOnFirstDue,
    ReversesDelayedBatch,
)
from tests.broken_inspect_backends import (
    ConsumersNamedByConnection,
    CountsSettledDeadLetters,
    DeadLetteredCountsAnyGroup,
    DeadLetteredIgnoresTheDlqGroup,
    DeadLetteredNeverDropsWithoutLag,
    InspectCountsPrefixedTopics,
    InspectMiscountsInFlight,
    LagAlwaysZero,
    ListsNoDeadLetterTopics,
    ListsNoDelayedOnlyTopics,
    ListsNoTopics,
    ListsOnlyWaitingTopics,
    OldestInFlightAlwaysNone,
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
    LastLevelDeadLettersDeeper,
    LastLevelDropsPastMaxDeliveries,
    LateRejectDeadLetters,
    LateRequeueDuplicates,
    RedeliversAcked,
    RejectDropsReason,
    RejectRequeuesUnderMaxDeliveries,
    SettlingDeletesForEveryGroup,
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


class FoldsTextTypes(MemoryBroker):
    """Every ``text/*`` content type is delivered as the default one, ``text/plain;
    charset=utf-8``, as a compact envelope that stores "a text body" as one flag
    would: a ``text/csv`` body loses its type, and a latin-1 one is read as UTF-8."""

    def _publish(self, topic: str, messages: Sequence[Message]) -> None:
        text = "text/plain; charset=utf-8"
        super()._publish(
            topic,
            [
                dataclasses.replace(m, content_type=text)
                if m.content_type.startswith("text/")
                else m
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


class PatternsSwapReversedRanges(MemoryBroker):
    """A reversed range in a pattern's set reads as the range the other way round, as
    Redis's glob (``PSUBSCRIBE``) reads it: ``v[9-0]`` matches ``v5``, which by the
    promised syntax it never does."""

    def _sources(self, subscription: Subscription) -> Iterator[tuple[str, Topic, Group]]:
        if not subscription.pattern:
            yield from super()._sources(subscription)
            return
        original = subscription.topic
        subscription.topic = re.sub(
            r"\[(!?)(\w)-(\w)\]",
            lambda m: f"[{m[1]}{min(m[2], m[3])}-{max(m[2], m[3])}]",
            original,
        )
        try:
            yield from super()._sources(subscription)
        finally:
            subscription.topic = original


class KeepsPrefetchedOnClose(MemoryBroker):
    """Closing a subscription keeps what it prefetched leased until the timeout."""

    def _unsubscribe(self, subscription: Subscription, unreturned: list[Delivery]) -> None:
        super()._unsubscribe(subscription, [])


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


class RequeueReasonDroppedWithoutDelay(MemoryBroker):
    """A nack(requeue=True, reason=...) without a delay drops its reason: a message it
    sends past max_deliveries is dead-lettered as "max_deliveries"."""

    def _nack_with(
        self,
        deliveries: Sequence[Delivery],
        requeue: bool,
        delay: float | None,
        reason: str | None,
    ) -> None:
        super()._nack_with(deliveries, requeue, delay, None if requeue and not delay else reason)


class RequeueReasonDroppedWithoutDelayCapability(RequeueReasonDroppedWithoutDelay):
    """The same, on a backend that declares no DELAY (as kombu+amqp and nats)."""

    capabilities = MemoryBroker.capabilities & ~Capability.DELAY


class ExtendNeverShortens(MemoryBroker):
    """extend(seconds) only ever lengthens a lease: the deadline becomes the later of
    the old one and seconds from the call."""

    def _extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        with self._store.lock:
            leases = [lease for lease in map(self._lease, deliveries) if lease is not None]
            old = {id(lease): lease.deadline for lease in leases}
        super()._extend(deliveries, seconds)
        with self._store.lock:
            for lease in leases:
                lease.deadline = max(lease.deadline, old[id(lease)])


class RejectCountsOneDelivery(MemoryBroker):
    """A rejected message's dead letter says x-deliveries: 1, however many times it
    was delivered."""

    def _requeue_or_dead_letter(
        self,
        topic_name: str,
        group: Group,
        lease: Lease,
        requeue: bool,
        reason: str,
        delay: float | None = None,
    ) -> None:
        if not requeue:
            lease = dataclasses.replace(lease, attempt=1)
        super()._requeue_or_dead_letter(topic_name, group, lease, requeue, reason, delay)


class HandsOutKeepalives(MemoryBroker):
    """A fetch that finds nothing hands out an empty message, as a backend that took a
    server's keepalive or status reply (a JetStream pull's ``408 Request Timeout``) for
    a message would: a receive on an empty topic returns a delivery."""

    def _fetch(
        self, subscription: Subscription, max_messages: int, timeout: float
    ) -> list[Delivery]:
        fetched = super()._fetch(subscription, max_messages, timeout)
        if fetched or subscription.closed:
            return fetched
        status = Message("keepalive", subscription.topic, b"", "application/octet-stream")
        receipt = (subscription.topic, subscription.group, -1)
        return [Delivery(status, subscription=subscription, receipt=receipt)]


@dataclasses.dataclass(frozen=True)
class _ZeroMeansNoLimitOptions(MemoryOptions):
    def __post_init__(self) -> None:
        if self.max_deliveries == 0:
            object.__setattr__(self, "max_deliveries", None)
        super().__post_init__()


class ZeroMaxDeliveriesMeansNoLimit(MemoryBroker):
    """``max_deliveries=0`` is taken as "no limit" (as some servers read a zero
    delivery limit), not refused: a typo'd or unset-by-mistake limit silently
    dead-letters nothing."""

    Options: ClassVar[type[BrokerOptions]] = _ZeroMeansNoLimitOptions


class DriverErrorOnClose(MemoryBroker):
    """A fetch that a close overtakes raises the driver's own error for a closed
    connection (an ``OSError``) instead of returning: a receive under way ends with
    that, not with ``BrokerClosed``."""

    def _fetch(
        self, subscription: Subscription, max_messages: int, timeout: float
    ) -> list[Delivery]:
        fetched = super()._fetch(subscription, max_messages, timeout)
        if not fetched and subscription.closed:
            raise OSError("Connection closed by the client")
        return fetched


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
    "counts_settled_dead_letters": CountsSettledDeadLetters,
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
    "delayed_publish_restamped": DelayedPublishRestamped,
    "oldest_in_flight_always_none": OldestInFlightAlwaysNone,
    "delayed_retry_counts_in_flight": DelayedRetryCountsInFlight,
    "requeue_reason_dropped_without_delay": RequeueReasonDroppedWithoutDelay,
    "requeue_reason_dropped_without_delay_capability": RequeueReasonDroppedWithoutDelayCapability,
    "extend_never_shortens": ExtendNeverShortens,
    "lists_only_waiting_topics": ListsOnlyWaitingTopics,
    "delayed_publish_to_first_group_only": DelayedPublishToFirstGroupOnly,
    "delayed_retry_leaks_to_other_groups": DelayedRetryLeaksToOtherGroups,
    "reject_counts_one_delivery": RejectCountsOneDelivery,
    "lag_always_zero": LagAlwaysZero,
    "topic_names_merge": TopicNamesMerge,
    "new_groups_default_to_latest": NewGroupsDefaultToLatest,
    "groups_share_one_line": GroupsShareOneLine,
    "earliest_starts_where_others_are": EarliestStartsWhereOthersAre,
    "expiry_ignores_max_deliveries": ExpiryIgnoresMaxDeliveries,
    "drops_what_nobody_reads": DropsWhatNobodyReads,
    "pattern_deliveries_name_the_pattern": PatternDeliveriesNameThePattern,
    "accepts_undeclared_delay": AcceptsUndeclaredDelay,
    "publishes_batch_one_by_one": PublishesBatchOneByOne,
    "default_group_per_subscriber": DefaultGroupPerSubscriber,
    "header_names_folded": HeaderNamesFolded,
    "truncates_long_names": TruncatesLongNames,
    "patterns_skip_dead_letter_topics": PatternsSkipDeadLetterTopics,
    "settling_deletes_for_every_group": SettlingDeletesForEveryGroup,
    "last_level_dead_letters_deeper": LastLevelDeadLettersDeeper,
    "hands_out_keepalives": HandsOutKeepalives,
    "zero_max_deliveries_means_no_limit": ZeroMaxDeliveriesMeansNoLimit,
    "driver_error_on_close": DriverErrorOnClose,
    "folds_text_types": FoldsTextTypes,
    "patterns_swap_reversed_ranges": PatternsSwapReversedRanges,
    "delayed_retry_past_max_deliveries": DelayedRetryPastMaxDeliveries,
    "last_level_drops_past_max_deliveries": LastLevelDropsPastMaxDeliveries,
    "dead_lettered_counts_any_group": DeadLetteredCountsAnyGroup,
    "dead_lettered_ignores_the_dlq_group": DeadLetteredIgnoresTheDlqGroup,
    "dead_lettered_never_drops_without_lag": DeadLetteredNeverDropsWithoutLag,
    "delayed_publish_drops_headers": DelayedPublishDropsHeaders,
    "delayed_retry_loses_content_type": DelayedRetryLosesContentType,
    "consumers_named_by_connection": ConsumersNamedByConnection,
}
