"""redis+stream with a capped pool (``max_connections=1`` in the URL): the broker keeps
no connection of the pool's for its single publishes and settlements, so a batch, a
delayed publish, inspect and purge find one after a publish. Before, the connection
kept for single publishes was the pool's only one: ``publish_many``, a delayed publish
(and, before publishes moved to the settling client, inspect and purge) failed with
"lost the connection to Redis ...: Too many connections". Against a real redis-server
(the test suite's), sync and asyncio."""

from __future__ import annotations

import asyncio

import brokerkit
import brokerkit.aio
from tests.conftest import RedisTarget

TOPIC = "orders"


def test_one_connection_serves_every_kind_of_publish(
    redis_target: RedisTarget, prefix: str
) -> None:
    url = redis_target.url("redis+stream", max_connections="1")
    with brokerkit.connect(url, prefix=prefix) as broker:
        broker.publish(TOPIC, "a")
        broker.publish_many(TOPIC, ["b", "c"])
        broker.publish(TOPIC, "d")
        broker.publish_many(TOPIC, ["e", "f"], delay=60)
        info = broker.inspect(TOPIC)
        assert (info.length, info.scheduled) == (4, 2)
        assert broker.purge(TOPIC) == 6


def test_one_connection_serves_max_age_publishes_and_a_delayed_one(
    redis_target: RedisTarget, prefix: str
) -> None:
    url = redis_target.url("redis+stream", max_connections="1", max_age="60")
    with brokerkit.connect(url, prefix=prefix) as broker:
        broker.publish(TOPIC, "a")
        broker.publish(TOPIC, "b")
        broker.publish_many(TOPIC, ["c"], delay=60)
        assert broker.inspect(TOPIC).length == 2


def test_one_asyncio_connection_serves_every_kind_of_publish(
    redis_target: RedisTarget, prefix: str
) -> None:
    url = redis_target.url("redis+stream", max_connections="1")

    async def main() -> tuple[int, int, int]:
        async with brokerkit.aio.connect(url, prefix=prefix) as broker:
            await broker.publish(TOPIC, "a")
            await broker.publish_many(TOPIC, ["b", "c"])
            await broker.publish(TOPIC, "d")
            await broker.publish_many(TOPIC, ["e", "f"], delay=60)
            info = await broker.inspect(TOPIC)
            return info.length, info.scheduled, await broker.purge(TOPIC)

    assert asyncio.run(asyncio.wait_for(main(), 60)) == (4, 2, 6)
