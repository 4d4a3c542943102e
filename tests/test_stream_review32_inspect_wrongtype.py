"""redis+stream's inspect of a topic whose stream is fine but one of whose other keys
another program wrote as another Redis type (its dead-letter topic's stream, the
``:lost`` or ``:scheduled`` bookkeeping, a group's delayed retries) raises
IncompatibleTopic naming that key, not the topic. Before, it said "the topic 'orders'
... is stored in a Redis key of another type; use another topic or prefix", sending
the user to a stream that was fine (``brokerkit inspect`` showed the same). Against a
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
SUFFIXES = [".dlq", ":lost", ":scheduled", ":delayed:g"]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_inspect_names_the_key_of_another_type(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str, suffix: str
) -> None:
    key = f"{prefix}:{{{TOPIC}}}{suffix}"
    with brokerkit.connect(redis_target.url("redis+stream"), prefix=prefix) as broker:
        broker.create_group(TOPIC, "g")
        broker.publish(TOPIC, {"n": 1})
        redis_client.set(key, "another program's")
        with pytest.raises(IncompatibleTopic) as raised:
            broker.inspect(TOPIC)
        assert f"DEL {key}" in str(raised.value), raised.value
        redis_client.delete(key)
        assert broker.inspect(TOPIC).length == 1


def test_inspect_of_a_stream_of_another_type_still_blames_the_topic(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str
) -> None:
    redis_client.set(f"{prefix}:{{{TOPIC}}}", "another program's")
    broker = brokerkit.connect(redis_target.url("redis+stream"), prefix=prefix)
    with broker, pytest.raises(IncompatibleTopic, match=r"the topic 'orders'.*another topic"):
        broker.inspect(TOPIC)


def test_asyncio_inspect_names_the_dead_letter_key(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:{{{TOPIC}}}.dlq"

    async def main() -> None:
        url = redis_target.url("redis+stream")
        async with brokerkit.aio.connect(url, prefix=prefix) as broker:
            await broker.publish(TOPIC, {"n": 1})
            await asyncio.to_thread(redis_client.set, key, "another program's")
            with pytest.raises(IncompatibleTopic) as raised:
                await broker.inspect(TOPIC)
            assert "the dead-letter topic 'orders.dlq'" in str(raised.value), raised.value
            assert f"DEL {key}" in str(raised.value), raised.value

    asyncio.run(asyncio.wait_for(main(), 60))
