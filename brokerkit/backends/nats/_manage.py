"""The stream itself: making it, and what ``inspect`` and ``purge`` ask of JetStream."""

from __future__ import annotations

from brokerkit._inspect import GroupInfo, TopicInfo
from brokerkit.backends.nats._client import NatsClient
from brokerkit.backends.nats._wire import parse_description, subject_for
from brokerkit.exceptions import BrokerError, ConfigurationError

__all__ = ["ensure_stream", "inspect_topic", "purge_topic"]

_STREAM_NOT_FOUND = 10059
_SUBJECTS_OVERLAP = 10065


async def ensure_stream(client: NatsClient, stream: str) -> None:
    """Make the stream ``stream`` (subjects ``<stream>.>``) unless it exists.

    :raises ConfigurationError: another stream already captures those subjects.
    """
    info = await client.api(f"STREAM.INFO.{stream}", None, "find the stream")
    error = info.get("error")
    if error and error.get("err_code") == _STREAM_NOT_FOUND:
        config = {
            "name": stream,
            "subjects": [f"{stream}.>"],
            "retention": "limits",
            "storage": "file",
            "discard": "old",
            "num_replicas": 1,
        }
        info = await client.api(f"STREAM.CREATE.{stream}", config, "create the stream")
        error = info.get("error")
        if error and error.get("err_code") == _SUBJECTS_OVERLAP:
            raise ConfigurationError(
                f"another JetStream stream on {client.server} already captures subjects "
                f"under {stream}.>: choose another prefix"
            )
    if error:
        raise BrokerError(f"JetStream refused the stream {stream!r}: {error.get('description')}")


async def inspect_topic(client: NatsClient, stream: str, topic: str, dlq_topic: str) -> TopicInfo:
    """Length and dead letters from stream info, groups from consumer info."""
    subject = subject_for(stream, topic)
    length = await _count(client, stream, subject)
    dead = await _count(client, stream, subject_for(stream, dlq_topic))
    groups: list[GroupInfo] = []
    consumers: dict[str, str] = {}
    offset = 0
    while True:
        page = await client.api(f"CONSUMER.LIST.{stream}", {"offset": offset}, f"inspect {topic!r}")
        found = page.get("consumers") or []
        for info in found:
            named = parse_description(info.get("config", {}).get("description"))
            if named is None or named[0] != topic:
                continue
            consumers[named[1]] = info["name"]
            groups.append(
                GroupInfo(
                    name=named[1],
                    pending=int(info.get("num_ack_pending", 0)),
                    lag=int(info.get("num_pending", 0)),
                )
            )
        offset += len(found)
        if not found or offset >= int(page.get("total", 0)):
            break
    groups.sort(key=lambda g: g.name)
    return TopicInfo(
        topic=topic,
        length=length,
        in_flight=sum(g.pending for g in groups),
        dead_lettered=dead,
        groups=tuple(groups),
        details={"stream": stream, "subject": subject, "consumers": consumers},
    )


async def _count(client: NatsClient, stream: str, subject: str) -> int:
    info = await client.api(f"STREAM.INFO.{stream}", {"subjects_filter": subject}, "count messages")
    subjects = info.get("state", {}).get("subjects") or {}
    return int(subjects.get(subject, 0))


async def purge_topic(client: NatsClient, stream: str, topic: str) -> int:
    """Drop what the stream holds for ``topic``; how many messages that was."""
    answer = await client.api(
        f"STREAM.PURGE.{stream}", {"filter": subject_for(stream, topic)}, f"purge {topic!r}"
    )
    if "error" in answer:
        raise BrokerError(
            f"JetStream refused to purge {topic!r}: {answer['error'].get('description')}"
        )
    return int(answer.get("purged", 0))
