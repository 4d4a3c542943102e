"""The stream itself: making it, what ``inspect``, ``topics`` and ``purge`` ask of
JetStream (each only reads, or purges, what is there: a stream that does not exist is
found so, never made), and deleting what a broker made (its durable consumers, and its
stream once nothing else is in it)."""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import Any, NamedTuple

from brokerkit._inspect import DEAD_LETTER_GROUPS, GroupInfo, TopicInfo
from brokerkit._topics import is_topic
from brokerkit.backends.nats._client import CONSUMER_NOT_FOUND, STREAM_NOT_FOUND, NatsClient
from brokerkit.backends.nats._wire import parse_description, subject_for
from brokerkit.exceptions import BrokerError, ConfigurationError, ConnectionFailed, InvalidOption

__all__ = [
    "NatsDeclared",
    "delete_consumer",
    "delete_made",
    "delete_stream_if_unused",
    "ensure_stream",
    "inspect_topic",
    "list_topics",
    "purge_topic",
]


class NatsDeclared(NamedTuple):
    """What a broker made on the server, and only that (a stream or consumer that was
    there already is not in it): what a run created, to delete it."""

    #: The broker's stream (its ``prefix``), if the broker made it.
    streams: frozenset[str]
    #: ``(stream, name)`` of every durable consumer it made.
    consumers: frozenset[tuple[str, str]]


_SUBJECTS_OVERLAP = 10065
#: Tries of a stream creation that failed making its store (see ensure_stream).
_STORE_RETRIES = 5


async def ensure_stream(client: NatsClient, stream: str) -> bool:
    """Make the stream ``stream`` (subjects ``<stream>.>``) unless it exists; whether
    this made it.

    :raises ConfigurationError: another stream already captures those subjects.
    """
    info = await client.api(f"STREAM.INFO.{stream}", None, "find the stream")
    error = info.get("error")
    made = False
    if error and error.get("err_code") == STREAM_NOT_FOUND:
        config = {
            "name": stream,
            "subjects": [f"{stream}.>"],
            "retention": "limits",
            "storage": "file",
            "discard": "old",
            "num_replicas": 1,
        }
        for attempt in range(_STORE_RETRIES):
            info = await client.api(f"STREAM.CREATE.{stream}", config, "create the stream")
            error = info.get("error")
            # nats-server removes an account's streams directory with its last stream;
            # a creation racing that removal fails once and succeeds when tried again
            if not (error and "creating store" in str(error.get("description"))):
                break
            await asyncio.sleep(0.05 * (attempt + 1))
        made = not error
        if error and error.get("err_code") == _SUBJECTS_OVERLAP:
            raise ConfigurationError(
                f"another JetStream stream on {client.server} already captures subjects "
                f"under {stream}.>: choose another prefix"
            )
    if error:
        raise BrokerError(f"JetStream refused the stream {stream!r}: {error.get('description')}")
    return made


async def inspect_topic(client: NatsClient, stream: str, topic: str, dlq_topic: str) -> TopicInfo:
    """Length and dead letters from stream info, groups from consumer info.

    The dead letters are those still waiting to be dealt with: the stream keeps
    settled messages, so the fewer either group of ``DEAD_LETTER_GROUPS`` on
    ``dlq_topic`` that exists has not settled (its lag plus its pending); every stored
    one where neither exists. Another group (a tail from "latest", say) does not
    count.

    Read-only: where the stream does not exist (nothing of this ``prefix`` was ever
    published or subscribed to, or it was deleted), nor does the topic: it is
    reported empty, with no group, and the stream is not made.
    """
    subject = subject_for(stream, topic)
    details: dict[str, Any] = {"stream": stream, "subject": subject}
    counts = await _counts(client, stream, subject, f"inspect {topic!r}")
    if counts is None:
        return TopicInfo(topic=topic, length=0, details={**details, "consumers": {}})
    length = int(counts.get(subject, 0))
    dead = await _count(client, stream, subject_for(stream, dlq_topic))
    groups: list[GroupInfo] = []
    consumers: dict[str, str] = {}
    # The stream sequence after which each group (or, with none, the topic) waits.
    waiting_after: list[int] = []
    dead_unsettled = [dead]
    for info in await _consumers(client, stream, f"inspect {topic!r}"):
        named = parse_description(info.get("config", {}).get("description"))
        if named is not None and named[0] == dlq_topic and named[1] in DEAD_LETTER_GROUPS:
            unsettled = int(info.get("num_pending", 0)) + int(info.get("num_ack_pending", 0))
            dead_unsettled.append(unsettled)
        if named is None or named[0] != topic:
            continue
        consumers[named[1]] = info["name"]
        lag = int(info.get("num_pending", 0))
        groups.append(
            GroupInfo(name=named[1], pending=int(info.get("num_ack_pending", 0)), lag=lag)
        )
        if lag:
            waiting_after.append(int(info.get("delivered", {}).get("stream_seq", 0)))
    if not groups and length:
        waiting_after.append(0)
    published = [await _next_time(client, stream, subject, seq) for seq in waiting_after]
    oldest = min((p for p in published if p is not None), default=None)
    groups.sort(key=lambda g: g.name)
    return TopicInfo(
        oldest_waiting_age=None if oldest is None else max(time.time() - oldest, 0.0),
        topic=topic,
        length=length,
        in_flight=sum(g.pending for g in groups),
        dead_lettered=min(dead_unsettled),
        groups=tuple(groups),
        details={**details, "consumers": consumers},
    )


async def list_topics(client: NatsClient, stream: str) -> list[str]:
    """The topics with a message in the stream, or a group. A subject that carries no
    valid topic (another program published it) is left out. Where the stream does not
    exist, none (it is not made)."""
    subjects = await _counts(client, stream, f"{stream}.>", "list the topics")
    if subjects is None:
        return []
    found = {topic_of(stream, s) for s in subjects}
    for consumer in await _consumers(client, stream, "list the topics"):
        named = parse_description(consumer.get("config", {}).get("description"))
        if named is not None:
            found.add(named[0])
    return sorted(topic for topic in found if is_topic(topic))


def topic_of(stream: str, subject: str) -> str:
    """The topic a subject of the stream carries (the inverse of ``subject_for``)."""
    return ".".join("" if t == "%" else t for t in subject[len(stream) + 1 :].split("."))


async def _consumers(client: NatsClient, stream: str, what: str) -> list[dict[str, Any]]:
    """Every consumer of the stream, page by page."""
    consumers: list[dict[str, Any]] = []
    while True:
        page = await client.api(f"CONSUMER.LIST.{stream}", {"offset": len(consumers)}, what)
        found = page.get("consumers") or []
        consumers.extend(found)
        if not found or len(consumers) >= int(page.get("total", 0)):
            return consumers


async def _next_time(client: NatsClient, stream: str, subject: str, after: int) -> float | None:
    """When the first message of ``subject`` past stream sequence ``after`` was stored."""
    answer = await client.api(
        f"STREAM.MSG.GET.{stream}", {"seq": after + 1, "next_by_subj": subject}, "read a time"
    )
    stamp = (answer.get("message") or {}).get("time")
    return None if not stamp else _rfc3339(stamp)


def _rfc3339(stamp: str) -> float:
    """``2026-12-02T02:40:00.123456789Z`` as seconds since the epoch (to the microsecond)."""
    head, _, fraction = stamp.rstrip("Z").partition(".")
    moment = datetime.datetime.strptime(head, "%Y-%m-%dT%H:%M:%S")
    seconds = moment.replace(tzinfo=datetime.timezone.utc).timestamp()
    return seconds + (float(f"0.{fraction[:6]}") if fraction else 0.0)


async def _counts(
    client: NatsClient, stream: str, subjects: str, what: str
) -> dict[str, int] | None:
    """The messages the stream holds per subject matching ``subjects``; None where the
    stream does not exist.

    :raises BrokerError: JetStream refused (another reason than that).
    """
    info = await client.api(f"STREAM.INFO.{stream}", {"subjects_filter": subjects}, what)
    error = info.get("error")
    if error and error.get("err_code") == STREAM_NOT_FOUND:
        return None
    if error:
        raise BrokerError(
            f"JetStream refused to {what} (the stream {stream!r}): {error.get('description')}"
        )
    found = info.get("state", {}).get("subjects") or {}
    return {subject: int(count) for subject, count in found.items()}


async def _count(client: NatsClient, stream: str, subject: str) -> int:
    """The messages the stream holds of ``subject`` (0 where the stream is gone)."""
    return (await _counts(client, stream, subject, "count messages") or {}).get(subject, 0)


async def purge_topic(client: NatsClient, stream: str, topic: str) -> int:
    """Drop what the stream holds for ``topic``; how many messages that was (0 where
    the stream does not exist: it is not made)."""
    answer = await client.api(
        f"STREAM.PURGE.{stream}", {"filter": subject_for(stream, topic)}, f"purge {topic!r}"
    )
    if answer.get("error", {}).get("err_code") == STREAM_NOT_FOUND:
        return 0
    if "error" in answer:
        raise BrokerError(
            f"JetStream refused to purge {topic!r}: {answer['error'].get('description')}"
        )
    return int(answer.get("purged", 0))


async def delete_consumer(client: NatsClient, stream: str, consumer: str) -> None:
    """Delete the durable consumer ``consumer`` of ``stream`` (gone already: done).

    :raises BrokerError: JetStream refused.
    """
    answer = await client.api(
        f"CONSUMER.DELETE.{stream}.{consumer}", None, f"delete the consumer {consumer!r}"
    )
    error = answer.get("error")
    if error and error.get("err_code") not in (CONSUMER_NOT_FOUND, STREAM_NOT_FOUND):
        raise BrokerError(
            f"JetStream refused to delete the consumer {consumer!r} of the stream "
            f"{stream!r}: {error.get('description')}"
        )


async def delete_stream_if_unused(client: NatsClient, stream: str) -> str | None:
    """Delete ``stream`` if it holds no message and no consumer (gone already: done);
    None once it is gone, else why it was kept. (JetStream deletes no stream on a
    condition: a consumer made, or a message stored, between the look and the delete
    goes with it.)

    :raises BrokerError: JetStream refused.
    """
    info = await client.api(f"STREAM.INFO.{stream}", None, f"look at the stream {stream!r}")
    error = info.get("error")
    if error and error.get("err_code") == STREAM_NOT_FOUND:
        return None
    if error:
        raise BrokerError(
            f"JetStream could not say what the stream {stream!r} holds: {error.get('description')}"
        )
    state = info.get("state", {})
    messages, consumers = int(state.get("messages", 0)), int(state.get("consumer_count", 0))
    if messages or consumers:
        return f"it still holds {messages} message(s) and {consumers} consumer(s)"
    answer = await client.api(f"STREAM.DELETE.{stream}", None, f"delete the stream {stream!r}")
    error = answer.get("error")
    if error and error.get("err_code") != STREAM_NOT_FOUND:
        raise BrokerError(
            f"JetStream refused to delete the stream {stream!r}: {error.get('description')}"
        )
    return None


async def delete_made(
    client: NatsClient, made: NatsDeclared, wanted: NatsDeclared
) -> tuple[NatsDeclared, list[str]]:
    """Delete the consumers of ``wanted``, then its streams (each only if it holds
    nothing any more: :func:`delete_stream_if_unused`); what was deleted, and why each
    of the rest was not.

    :raises InvalidOption: ``wanted`` names one that is not in ``made`` (what the
        broker made): nothing was deleted.
    :raises ConnectionFailed: the server could not be reached (the rest is not tried:
        each would wait ``reconnect_timeout`` as well; a consumer or stream deleted
        before is found gone, and done, when asked again).
    """
    foreign = sorted(
        [f"stream {name}" for name in wanted.streams - made.streams]
        + [f"consumer {name} of the stream {s}" for s, name in wanted.consumers - made.consumers]
    )
    if foreign:
        raise InvalidOption(f"not made by this broker, so not deleted: {', '.join(foreign)}")
    consumers: set[tuple[str, str]] = set()
    streams: set[str] = set()
    refused: list[str] = []
    for stream, name in sorted(wanted.consumers):
        try:
            await delete_consumer(client, stream, name)
        except ConnectionFailed:
            raise
        except BrokerError as exc:
            refused.append(str(exc))
        else:
            consumers.add((stream, name))
    for stream in sorted(wanted.streams):
        try:
            kept = await delete_stream_if_unused(client, stream)
        except ConnectionFailed:
            raise
        except BrokerError as exc:
            refused.append(str(exc))
            continue
        if kept is None:
            streams.add(stream)
        else:
            refused.append(f"the stream {stream!r} this broker made was kept: {kept}")
    return NatsDeclared(frozenset(streams), frozenset(consumers)), refused
