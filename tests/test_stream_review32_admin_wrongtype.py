"""redis+stream's purge, delayed publish and delete_group name a bookkeeping key that
another program wrote as another Redis type (the topic's ``:scheduled`` set, the
``:vt`` or ``:lost`` hash) and say to DEL it. Before, each raised "the topic 'orders'
... is stored in a Redis key of another type; use another topic or prefix", though the
topic's stream was fine. Against a real redis-server, sync and asyncio."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import redis

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import IncompatibleTopic
from tests.conftest import RedisTarget

TOPIC = "orders"

#: (the key's suffix after ``<prefix>:{orders}``, the operation that meets it)
CASES: list[tuple[str, Callable[[Any], Any]]] = [
    (":scheduled", lambda broker: broker.purge(TOPIC)),
    (":scheduled", lambda broker: broker.publish(TOPIC, {"n": 2}, delay=60)),
    (":vt", lambda broker: broker.delete_group(TOPIC, "g")),
    (":lost", lambda broker: broker.delete_group(TOPIC, "g")),
]


@pytest.mark.parametrize(("suffix", "operation"), CASES, ids=["purge", "delay", "vt", "lost"])
def test_the_key_of_another_type_is_named(
    redis_target: RedisTarget,
    redis_client: redis.Redis,
    prefix: str,
    suffix: str,
    operation: Callable[[Any], Any],
) -> None:
    key = f"{prefix}:{{{TOPIC}}}{suffix}"
    with brokerkit.connect(redis_target.url("redis+stream"), prefix=prefix) as broker:
        broker.create_group(TOPIC, "g")
        broker.publish(TOPIC, {"n": 1})
        redis_client.set(key, "another program's")
        with pytest.raises(IncompatibleTopic) as raised:
            operation(broker)
        assert f"DEL {key}" in str(raised.value), raised.value


def test_asyncio_a_delayed_publish_names_the_scheduled_key(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:{{{TOPIC}}}:scheduled"

    async def main() -> None:
        url = redis_target.url("redis+stream")
        async with brokerkit.aio.connect(url, prefix=prefix) as broker:
            await broker.publish(TOPIC, {"n": 1})
            await asyncio.to_thread(redis_client.set, key, "another program's")
            with pytest.raises(IncompatibleTopic) as raised:
                await broker.publish(TOPIC, {"n": 2}, delay=60)
            assert f"DEL {key}" in str(raised.value), raised.value
            await asyncio.to_thread(redis_client.delete, key)
            await broker.publish(TOPIC, {"n": 2}, delay=60)
            assert (await broker.inspect(TOPIC)).scheduled == 1

    asyncio.run(asyncio.wait_for(main(), 60))
