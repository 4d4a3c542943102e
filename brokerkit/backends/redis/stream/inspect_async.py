"""What ``inspect`` reports about a Redis stream: XINFO STREAM, GROUPS and
CONSUMERS as typed data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from brokerkit._inspect import ConsumerInfo, GroupInfo, TopicInfo
from brokerkit.backends.redis._stream_scripts import StreamScripts, text

__all__ = ["StreamGroupInfo", "StreamTopicInfo", "inspect_stream"]


@dataclass(frozen=True)
class StreamGroupInfo(GroupInfo):
    """One consumer group of a stream (XINFO GROUPS), with what trimming cost it.

    :ivar pending: entries delivered and not yet acked (the group's pending
        entries list, as ``XINFO GROUPS`` counts it; nacked entries waiting to be
        claimed again are among them).
    :ivar lag: entries the group has not read yet.
    :ivar last_delivered_id: the id of the last entry handed to the group.
    :ivar entries_read: entries the group has read (Redis 7 and later, else None).
    :ivar trimmed_pending: pending entries whose data was trimmed away (their ids
        are below the stream's first id): they can still be acked, but if they are
        never acked they cannot be redelivered.
    :ivar lost_to_trimming: pending entries found gone when a consumer tried to
        reclaim them; they were acked and counted here instead of being redelivered.
    """

    last_delivered_id: str = "0-0"
    entries_read: int | None = None
    trimmed_pending: int = 0
    lost_to_trimming: int = 0


@dataclass(frozen=True)
class StreamTopicInfo(TopicInfo):
    """A snapshot of one stream (XINFO STREAM), its groups and their consumers.

    :ivar first_id: the id of the oldest entry kept (None when the stream is empty).
    :ivar last_id: the id of the newest entry kept (None when the stream is empty).
    :ivar last_generated_id: the last id XADD handed out (survives trimming).
    :ivar trimmed_pending: over all groups, see :class:`StreamGroupInfo`.
    :ivar lost_to_trimming: over all groups, see :class:`StreamGroupInfo`.
    """

    first_id: str | None = None
    last_id: str | None = None
    last_generated_id: str = "0-0"
    trimmed_pending: int = 0
    lost_to_trimming: int = 0


def inspect_stream(
    client: redis.Redis,
    scripts: StreamScripts,
    topic: str,
    *,
    key: str,
    dead_letter_key: str,
    lost_key: str,
) -> StreamTopicInfo:
    """Read XINFO STREAM, GROUPS and CONSUMERS of ``key`` (a handful of round trips)."""
    try:
        stream = client.xinfo_stream(key)
    except redis.ResponseError as exc:
        if "no such key" not in str(exc).lower():
            raise
        return StreamTopicInfo(
            topic=topic,
            length=0,
            dead_lettered=client.xlen(dead_letter_key),
            details={"key": key, "dead_letter_key": dead_letter_key, "exists": False},
        )
    length = int(stream["length"])
    first = _entry_id(stream.get("first-entry"))
    last = _entry_id(stream.get("last-entry"))
    lost = {text(k): int(v) for k, v in client.hgetall(lost_key).items()}
    groups = []
    oldest: float | None = None
    for raw in client.xinfo_groups(key):
        group = _group(client, scripts, key, raw, length, first, last, lost)
        groups.append(group)
        if group.pending:
            head = client.xpending_range(key, group.name, "-", "+", 1)
            if head:
                age = int(str(head[0]["time_since_delivered"])) / 1000
                oldest = age if oldest is None else max(oldest, age)
    return StreamTopicInfo(
        topic=topic,
        length=length,
        in_flight=sum(g.pending for g in groups),
        dead_lettered=client.xlen(dead_letter_key),
        oldest_in_flight_age=oldest,
        groups=tuple(groups),
        first_id=first,
        last_id=last,
        last_generated_id=text(stream["last-generated-id"]),
        trimmed_pending=sum(g.trimmed_pending for g in groups),
        lost_to_trimming=sum(g.lost_to_trimming for g in groups),
        details=_stream_details(stream, key, dead_letter_key),
    )


def _group(
    client: redis.Redis,
    scripts: StreamScripts,
    key: str,
    raw: Mapping[str, Any],
    length: int,
    first: str | None,
    last: str | None,
    lost: Mapping[str, int],
) -> StreamGroupInfo:
    name = text(raw["name"])
    pending = int(raw["pending"])
    delivered = text(raw["last-delivered-id"])
    lag = raw.get("lag")
    if lag is None:
        # Redis 6.2 has no lag field, and 7.x leaves it out when deletions make it
        # unknowable: count the entries after the group's position on the server.
        lag = 0 if last is None else int(scripts.count_after(keys=[key], args=[delivered]))
    trimmed = 0
    if pending:
        if first is None:
            trimmed = pending
        else:
            below = client.xpending_range(key, name, "-", f"({first}", pending)
            trimmed = len(below)
    consumers = tuple(
        ConsumerInfo(text(c["name"]), int(c["pending"]), int(str(c["idle"])) / 1000)
        for c in client.xinfo_consumers(key, name)
    )
    entries_read = raw.get("entries-read")
    return StreamGroupInfo(
        name=name,
        pending=pending,
        lag=int(lag),
        consumers=consumers,
        last_delivered_id=delivered,
        entries_read=None if entries_read is None else int(entries_read),
        trimmed_pending=trimmed,
        lost_to_trimming=lost.get(name, 0),
    )


def _entry_id(entry: Any) -> str | None:
    if not entry:
        return None
    return text(entry[0])


def _stream_details(stream: Mapping[str, Any], key: str, dead_letter_key: str) -> dict[str, Any]:
    details: dict[str, Any] = {"key": key, "dead_letter_key": dead_letter_key, "exists": True}
    for name, value in stream.items():
        if name in ("first-entry", "last-entry"):
            continue
        details[name] = text(value) if isinstance(value, bytes) else value
    return details
