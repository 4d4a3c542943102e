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


@pytest.mark.parametrize("plain", [False, True])
def test_undecodable_channel_names_its_topic_escaped(
    redis_server: RedisServer, plain: bool
) -> None:
    prefix = f"p{uuid.uuid4().hex[:8]}"
    stem = f"a{uuid.uuid4().hex[:8]}."
    url = f"{redis_server.url('redis+pubsub')}?prefix={prefix}&plain_channels={str(plain).lower()}"
    client = redis_server.client()
    with brokerkit.connect(url) as broker, broker.subscribe(stem + "*", pattern=True) as sub:
        topics = []
        for suffix, topic in CHANNELS:
            channel = stem.encode() + suffix
            if not plain:
                channel = f"{prefix}:{{".encode() + channel + b"}"
            assert client.publish(channel, b"hello") == 1
            topics.append(stem + topic)
        heard = []
        for _ in topics:
            delivery = sub.receive(timeout=WAIT)
            assert delivery is not None
            heard.append(delivery.topic)
    client.close()
    assert heard == topics
    assert len(set(heard)) == len(heard)


def test_undecodable_channel_names_its_topic_escaped_asyncio(redis_server: RedisServer) -> None:
    stem = f"a{uuid.uuid4().hex[:8]}."
    url = f"{redis_server.url('redis+pubsub')}?plain_channels=true"
    client = redis_server.client()

    async def main() -> list[str]:
        async with brokerkit.aio.connect(url) as broker:
            sub = await broker.subscribe(stem + "*", pattern=True)
            async with sub:
                for suffix, _ in CHANNELS:
                    assert client.publish(stem.encode() + suffix, b"hello") == 1
                heard = []
                for _ in CHANNELS:
                    delivery = await sub.receive(timeout=WAIT)
                    assert delivery is not None
                    heard.append(delivery.topic)
                return heard

    heard = asyncio.run(main())
    client.close()
    assert heard == [stem + topic for _, topic in CHANNELS]
