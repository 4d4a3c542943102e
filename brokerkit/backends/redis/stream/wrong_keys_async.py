"""Which of a redis+stream topic's keys another program wrote as another Redis type:
the error that names it and says how to fix it, instead of blaming the topic."""

from __future__ import annotations

from typing import Any

from redis.exceptions import ResponseError

from brokerkit._url import BrokerURL
from brokerkit.backends.redis._connection import translate_errors
from brokerkit.backends.redis.stream.keys import StreamKeyspace
from brokerkit.backends.redis.stream.scripts import shown, text
from brokerkit.exceptions import BrokerError, IncompatibleTopic

__all__ = ["wrong_key"]


async def wrong_key(
    client: Any,
    url: BrokerURL,
    keys: StreamKeyspace,
    topic: str,
    group: str | None,
    dead_letter_topic: str,
) -> IncompatibleTopic | None:
    """The error naming the first key of ``topic`` beside its stream (its bookkeeping,
    that of ``group`` or, when None, of every group of the stream, and the stream of
    ``dead_letter_topic``) that holds another Redis type (another program wrote it);
    None when the topic's stream is itself of another type, none is, or they cannot be
    looked at now. Every bookkeeping key holds only what brokerkit makes again, so the
    error says to delete it: every fetch of the group (or inspect of the topic) would
    fail on it until then."""
    key = keys.topic
    try:
        with translate_errors(url, topic):
            if text(await client.type(key(topic))) not in ("none", "stream"):
                return None  # its stream: the topic's own error says so
            groups = [group] if group is not None else await _group_names(client, key(topic))
        expected = [
            (key(topic, "scheduled"), "zset", "the topic's delayed publishes"),
            (key(topic, "lost"), "hash", "the entries lost to trimming of each group"),
            (key(topic, "vt"), "hash", "the lease length of each group"),
        ]
        for name in groups:
            expected.append((key(topic, "wake", name), "stream", f"group {name!r}'s wake stream"))
            expected.append(
                (key(topic, "delayed", name), "zset", f"group {name!r}'s delayed retries")
            )
        expected.append((key(dead_letter_topic), "stream", dead_letter_topic))
        for name, kind, what in expected:
            with translate_errors(url, topic):
                found = text(await client.type(name))
            if found in ("none", kind):
                continue
            if what == dead_letter_topic:
                return IncompatibleTopic(
                    f"the dead-letter topic {what!r} of the topic {topic!r} at {url} "
                    f"is stored in a Redis key of another type ({name} holds a {found}, "
                    "not a stream; maybe written by another program): nothing is "
                    f"dead-lettered (the entries stay pending) until it is renamed or "
                    f"deleted (DEL {name})"
                )
            return IncompatibleTopic(
                f"the topic {topic!r} at {url} cannot be used: its brokerkit "
                f"bookkeeping key {name} ({what}) holds a Redis {found}, not a {kind} "
                f"(maybe written by another program); delete it (DEL {name}) and "
                "brokerkit makes it again"
            )
    except BrokerError:  # not looked at now: the topic's own error is raised
        return None
    return None


async def _group_names(client: Any, stream: str) -> list[str]:
    """The names of the groups of the stream ``stream`` (none if it does not exist)."""
    try:
        groups = await client.xinfo_groups(stream)
    except ResponseError as exc:
        if "no such key" not in str(exc).lower():
            raise
        return []
    return [shown(group["name"]) for group in groups]
