"""What ``inspect`` reports about a Redis stream: XINFO STREAM, GROUPS and
CONSUMERS as typed data (read by :mod:`.inspect_async`)."""

from __future__ import annotations

from dataclasses import dataclass

from brokerkit._inspect import GroupInfo, TopicInfo

__all__ = ["StreamGroupInfo", "StreamTopicInfo"]


@dataclass(frozen=True)
class StreamGroupInfo(GroupInfo):
    """One consumer group of a stream (XINFO GROUPS), with what trimming cost it.

    :ivar pending: entries delivered and not yet acked (the group's pending
        entries list, as ``XINFO GROUPS`` counts it; nacked entries waiting to be
        claimed again are among them, delayed retries are not: they count in
        ``TopicInfo.scheduled``).
    :ivar lag: entries the group has not read yet (after its position). Redis 7's
        lag only where nothing was ever removed from the stream: where Redis gives
        none (Redis 6.2; 7.x after an ``XDEL`` past the group's position), and after
        an ``XDEL`` or a trim, when Redis's may be too high (a group that read past
        removed entries keeps a read counter too low), they are counted, up to
        :data:`~.inspect_async.LAG_COUNT_LIMIT`: see ``lag_exact``.
    :ivar lag_exact: False when ``lag`` is a lower bound, never an upper one: the
        count stopped at :data:`~.inspect_async.LAG_COUNT_LIMIT` (at least that many
        entries wait), so that an inspect never holds Redis for long on a large stream.
    :ivar last_delivered_id: the id of the last entry handed to the group.
    :ivar entries_read: Redis's read counter of the group, ``XINFO GROUPS``'
        ``entries-read`` (Redis 7 and later, else None): a heuristic, too low after
        the group read past removed entries, and None where Redis lost track.
    :ivar trimmed_pending: pending entries whose data was trimmed away (their ids
        are below the stream's first id): they can still be acked, but if they are
        never acked they cannot be redelivered.
    :ivar lost_to_trimming: pending entries found gone when a consumer tried to
        renew, reclaim, requeue, delay or hand them back; they were counted here
        instead of being redelivered.
    """

    last_delivered_id: str = "0-0"
    lag_exact: bool = True
    entries_read: int | None = None
    trimmed_pending: int = 0
    lost_to_trimming: int = 0


@dataclass(frozen=True)
class StreamTopicInfo(TopicInfo):
    """A snapshot of one stream (XINFO STREAM), its groups and their consumers.

    :ivar first_id: the id of the oldest entry kept (None when the stream is empty).
    :ivar last_id: the id of the newest entry kept (None when the stream is empty).
    :ivar last_generated_id: the last id XADD handed out (survives trimming).
    :ivar oldest_in_flight_age: the longest idle time (seconds since delivery or
        the last lease renewal) of a pending entry a member holds; entries requeued
        or handed back and not claimed again, and delayed retries, are left out
        (they wait for a member). None when no member holds an entry.
    :ivar trimmed_pending: over all groups, see :class:`StreamGroupInfo`.
    :ivar lost_to_trimming: over all groups, see :class:`StreamGroupInfo`.
    """

    first_id: str | None = None
    last_id: str | None = None
    last_generated_id: str = "0-0"
    trimmed_pending: int = 0
    lost_to_trimming: int = 0
