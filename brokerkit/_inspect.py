"""What ``Broker.inspect`` reports about a topic."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEAD_LETTER_GROUPS", "DLQ_GROUP", "ConsumerInfo", "GroupInfo", "TopicInfo"]

#: The one group the ``brokerkit dlq`` command reads dead-letter topics with, so that
#: it never disturbs another, on a backend where a new group reads a topic from its
#: start (REPLAY).
DLQ_GROUP = "brokerkit-dlq"
#: The groups of a dead-letter topic that deal with its dead letters, those
#: ``dead_lettered`` counts by: the default group (what a plain ``subscribe`` of the
#: dead-letter topic reads with, ``brokerkit.DEFAULT_GROUP``) and :data:`DLQ_GROUP`.
#: Another group, one that only tails new dead letters say, does not clear the count.
DEAD_LETTER_GROUPS = ("default", DLQ_GROUP)


@dataclass(frozen=True)
class ConsumerInfo:
    """One consumer of a group.

    :ivar pending: deliveries it holds, unsettled.
    :ivar idle: seconds since it last read or settled, where the backend knows.
    """

    name: str
    pending: int = 0
    idle: float | None = None


@dataclass(frozen=True)
class GroupInfo:
    """One consumer group of a topic.

    :ivar pending: deliveries handed out and not yet settled.
    :ivar lag: messages the group has not been handed yet, where the backend knows.
    """

    name: str
    pending: int = 0
    lag: int | None = None
    consumers: tuple[ConsumerInfo, ...] = ()


@dataclass(frozen=True)
class TopicInfo:
    """A snapshot of one topic.

    :ivar length: messages stored for the topic (waiting, or kept for replay).
    :ivar in_flight: deliveries handed out and not yet settled, over all groups.
    :ivar dead_lettered: dead letters still waiting to be dealt with, in the topic's
        dead-letter topic, counted by the groups that deal with them
        (:data:`DEAD_LETTER_GROUPS`): the dead-letter topic's default group (a plain
        ``subscribe`` of it) and ``brokerkit-dlq`` (the ``brokerkit dlq`` command).
        Where one or both exist, the fewer either has not yet settled: its lag plus
        its pending, handed-back and delayed ones included; where neither exists,
        every one stored. Any other group (one started at ``"latest"`` to tail new
        dead letters, say) does not count. A dead letter read and acked drops out,
        also where the broker keeps settled messages for replay (redis+stream, NATS
        JetStream, memory). Where the broker could not count a group's lag exactly
        (redis+stream: its lag is counted on the server, up to 10,000 entries or 8 MB,
        on Redis 6.2, which gives none, and on 7.x once entries were removed from the
        stream, where Redis's own is unreliable), the count is an upper bound: every
        one stored.
    :ivar scheduled: messages the broker holds for a due time: delayed publishes and
        delayed retries (``nack(delay=...)``), over all groups; not in ``length``.
    :ivar oldest_in_flight_age: seconds the oldest unsettled delivery has been out.
    :ivar details: backend-specific facts (Redis XINFO fields, key names, ...).
    :ivar oldest_waiting_age: seconds since the oldest message not yet handed to some
        group was published (the lag in seconds of the furthest-behind group); None
        when nothing waits, or when the backend cannot tell without consuming.
    """

    topic: str
    length: int
    in_flight: int = 0
    dead_lettered: int = 0
    oldest_in_flight_age: float | None = None
    groups: tuple[GroupInfo, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    oldest_waiting_age: float | None = None
    scheduled: int = 0
