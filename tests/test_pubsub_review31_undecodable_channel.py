"""A delivery from a channel whose name is not UTF-8 (published by another program,
heard through a pattern subscription) names its topic with the undecodable bytes
escaped (``\\xff``), as redis streams' group names are shown.

They were replaced by U+FFFD: the raw bytes could not be told back, and the channel
``a\\xff\\xfe`` gave the same topic as the (valid UTF-8) channel ``a\\ufffd\\ufffd``. A
backslash is outside the topic syntax, so an escaped name never collides with a topic.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

import brokerkit
import brokerkit.aio
from tests.redis_server import RedisServer

WAIT = 5.0
REPLACED = "\ufffd\ufffd".encode()


#: (the end of the channel a program publishes to, the end of its delivery's topic)
CHANNELS: list[tuple[bytes, str]] = [
    (b"\xff\xfe", "\\xff\\xfe"),
    (REPLACED, "\ufffd\ufffd"),
    (b"ok", "ok"),
]


def heard(redis_server: RedisServer, plain: bool, channels: list[tuple[bytes, str]]) -> list[str]:
    """The topics a pattern subscription hears for messages another program publishes
    to the channels that end as ``channels`` say (prefixed, or plain), in order."""
    prefix = f"p{uuid.uuid4().hex[:8]}"
    stem = f"a{uuid.uuid4().hex[:8]}."
    url = f"{redis_server.url('redis+pubsub')}?prefix={prefix}&plain_channels={str(plain).lower()}"
    client = redis_server.client()
    with brokerkit.connect(url) as broker, broker.subscribe(stem + "*", pattern=True) as sub:
        for suffix, _ in channels:
            channel = stem.encode() + suffix
            if not plain:
                channel = f"{prefix}:{{".encode() + channel + b"}"
            assert client.publish(channel, b"hello") == 1
        topics = []
        for _ in channels:
            delivery = sub.receive(timeout=WAIT)
            assert delivery is not None
            topics.append(delivery.topic.removeprefix(stem))
    client.close()
    return topics


def heard_asyncio(redis_server: RedisServer, channels: list[tuple[bytes, str]]) -> list[str]:
    """:func:`heard` (plain channels) through the asyncio API."""
    stem = f"a{uuid.uuid4().hex[:8]}."
    url = f"{redis_server.url('redis+pubsub')}?plain_channels=true"
    client = redis_server.client()

    async def main() -> list[str]:
        async with brokerkit.aio.connect(url) as broker:
            sub = await broker.subscribe(stem + "*", pattern=True)
            async with sub:
                for suffix, _ in channels:
                    assert client.publish(stem.encode() + suffix, b"hello") == 1
                topics = []
                for _ in channels:
                    delivery = await sub.receive(timeout=WAIT)
                    assert delivery is not None
                    topics.append(delivery.topic.removeprefix(stem))
                return topics

    topics = asyncio.run(main())
    client.close()
    return topics


@pytest.mark.parametrize("plain", [False, True])
def test_undecodable_channel_names_its_topic_escaped(
    redis_server: RedisServer, plain: bool
) -> None:
    topics = heard(redis_server, plain, CHANNELS)
    assert topics == [topic for _, topic in CHANNELS]
    assert len(set(topics)) == len(topics)


def test_undecodable_channel_names_its_topic_escaped_asyncio(redis_server: RedisServer) -> None:
    assert heard_asyncio(redis_server, CHANNELS) == [topic for _, topic in CHANNELS]
