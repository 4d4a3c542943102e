"""redis+list with a capped pool (``max_connections``): the broker keeps no connection
of the pool's for its single publishes and settlements, so inspect, purge and the rest
find one after a publish or an ack. Against a real redis-server."""

from __future__ import annotations

import asyncio

import brokerkit
import brokerkit.aio
from tests.conftest import RedisTarget


def test_one_connection_serves_publishes_and_inspect(
    redis_target: RedisTarget, prefix: str
) -> None:
    url = redis_target.url("redis+list", max_connections="1")
    with brokerkit.connect(url, prefix=prefix) as broker:
        broker.publish("orders", "a")
        assert broker.inspect("orders").length == 1
        broker.publish("orders", "b")
        broker.publish_many("orders", ["c", "d"], delay=60)
        info = broker.inspect("orders")
        assert (info.length, info.scheduled) == (2, 2)
        assert broker.purge("orders") == 4


def test_a_settlement_keeps_no_connection_of_a_capped_pool(
    redis_target: RedisTarget, prefix: str
) -> None:
    # two: the open subscription keeps one for its fetches
    url = redis_target.url("redis+list", max_connections="2")
    with brokerkit.connect(url, prefix=prefix) as broker:
        broker.publish_many("orders", ["a", "b"])
        with broker.subscribe("orders") as subscription:
            first = subscription.receive(timeout=5)
            assert first is not None
            first.ack()
            assert broker.inspect("orders").length == 1
            second = subscription.receive(timeout=5)
            assert second is not None
            second.nack(requeue=False)
            broker.publish("orders", "c")
            assert broker.inspect("orders").dead_lettered == 1
        broker.purge("orders")
        broker.purge("orders.dlq")


def test_one_connection_serves_an_asyncio_broker(redis_target: RedisTarget, prefix: str) -> None:
    async def main() -> None:
        url = redis_target.url("redis+list", max_connections="1")
        broker = await brokerkit.aio.connect(url, prefix=prefix)
        try:
            await broker.publish("orders", "a")
            assert (await broker.inspect("orders")).length == 1
            await broker.purge("orders")
        finally:
            await broker.close()

    asyncio.run(main())
