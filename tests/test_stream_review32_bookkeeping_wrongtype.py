"""redis+stream: a bookkeeping key of a topic that another program wrote as another
Redis type (the group's wake stream, the topic's scheduled set, the group's delayed
set) fails the fetch with IncompatibleTopic naming that key and saying to DEL it, and
once it is deleted the subscription goes on. Before, every fetch of the group failed
with an error that blamed the topic ("is stored in a Redis key of another type; use
another topic or prefix"), whose stream was fine, and never named the key. Against a
real redis-server, sync and asyncio."""

from __future__ import annotations

import asyncio

import pytest
import redis

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import IncompatibleTopic
from tests.conftest import RedisTarget

TOPIC = "orders"
#: The key's suffix after the topic's ``<prefix>:{orders}``.
SUFFIXES = [":wake:g", ":scheduled", ":delayed:g"]


def _check_named(error: IncompatibleTopic, key: str) -> None:
    text = str(error)
    assert key in text, text
    assert f"DEL {key}" in text, text


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_bookkeeping_key_of_another_type_is_named(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str, suffix: str
) -> None:
    key = f"{prefix}:{{{TOPIC}}}{suffix}"
    with brokerkit.connect(redis_target.url("redis+stream"), prefix=prefix) as broker:
        subscription = broker.subscribe(TOPIC, group="g")
        redis_client.set(key, "another program's")
        with pytest.raises(IncompatibleTopic) as raised:
            subscription.receive(timeout=0.2)
        _check_named(raised.value, key)
        redis_client.delete(key)
        broker.publish(TOPIC, {"n": 1})
        delivery = subscription.receive(timeout=5)
        assert delivery is not None and delivery.body == {"n": 1}
        delivery.ack()


def test_a_wake_key_of_another_type_is_named_at_subscribe(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:{{{TOPIC}}}:wake:g"
    redis_client.set(key, "another program's")
    broker = brokerkit.connect(redis_target.url("redis+stream"), prefix=prefix)
    with broker, pytest.raises(IncompatibleTopic) as raised:
        broker.subscribe(TOPIC, group="g")
    _check_named(raised.value, key)


def test_the_stream_itself_of_another_type_still_blames_the_topic(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str
) -> None:
    redis_client.set(f"{prefix}:{{{TOPIC}}}", "another program's")
    broker = brokerkit.connect(redis_target.url("redis+stream"), prefix=prefix)
    with broker, pytest.raises(IncompatibleTopic, match="the topic 'orders'"):
        broker.subscribe(TOPIC, group="g")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_asyncio_a_bookkeeping_key_of_another_type_is_named(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str, suffix: str
) -> None:
    key = f"{prefix}:{{{TOPIC}}}{suffix}"

    async def main() -> None:
        url = redis_target.url("redis+stream")
        async with brokerkit.aio.connect(url, prefix=prefix) as broker:
            subscription = await broker.subscribe(TOPIC, group="g")
            await asyncio.to_thread(redis_client.set, key, "another program's")
            with pytest.raises(IncompatibleTopic) as raised:
                await subscription.receive(timeout=0.2)
            _check_named(raised.value, key)
            await asyncio.to_thread(redis_client.delete, key)
            await broker.publish(TOPIC, {"n": 1})
            delivery = await subscription.receive(timeout=5)
            assert delivery is not None and delivery.body == {"n": 1}
            await delivery.ack()

    asyncio.run(asyncio.wait_for(main(), 60))
