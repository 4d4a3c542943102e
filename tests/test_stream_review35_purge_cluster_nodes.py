"""redis+stream on a Redis Cluster: ``purge`` asks the node settings of the node that
holds the stream (``CONFIG GET`` and ``HELLO`` there: a cluster client refuses them in
a pipeline, which failed every purge on a cluster), and with Redis's defaults frees
nodes of small entries unread there as on one server (a probe naming at most
``stream-node-max-entries``, 100)."""

from __future__ import annotations

import asyncio

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis.stream import RedisStreamBroker
from brokerkit.backends.redis.stream.purge import SMALL_ENTRY, node_trimming
from tests.redis_cluster import RedisClusterSet
from tests.redis_server import RedisServer


def test_a_purge_on_a_cluster_trims_as_on_one_server(
    redis_cluster: RedisClusterSet, prefix: str
) -> None:
    with brokerkit.connect(redis_cluster.url("redis+stream", prefix=prefix)) as broker:
        assert isinstance(broker, RedisStreamBroker)
        key = broker.stream_key("t")
        client = broker._scripts.purge.client
        assert node_trimming(client, key) == (SMALL_ENTRY, 100)  # stream-node-max-entries
        broker.create_group("t", "g", start="latest")
        broker.publish_many("t", ["x" * 100] * 500)
        assert broker.purge("t") == 500
        assert client.xlen(key) == 0


def test_the_async_purge_asks_the_node_settings_too(
    redis_cluster: RedisClusterSet, prefix: str
) -> None:
    """On a cluster and on one server (whose default settings allow trimming, and
    ``stream-node-max-bytes 0`` does not)."""
    from brokerkit.backends.redis.stream.purge_async import node_trimming as asking

    async def main(url: str, server: RedisServer | None) -> list[tuple[int, int]]:
        async with brokerkit.aio.connect(url) as broker:
            key = broker.stream_key("t")
            client = broker._scripts.purge.client
            await broker.create_group("t", "g", start="latest")
            await broker.publish_many("t", ["x" * 100] * 500)
            found = [await asking(client, key)]
            assert await broker.purge("t") == 500
            if server is not None:
                server.client().config_set("stream-node-max-bytes", 0)
                found.append(await asking(client, key))
            return found

    cluster = asyncio.run(main(redis_cluster.url("redis+stream", prefix=prefix), None))
    assert cluster == [(SMALL_ENTRY, 100)]
    with RedisServer() as server:
        one = asyncio.run(main(server.url("redis+stream") + f"?prefix={prefix}", server))
    assert one == [(SMALL_ENTRY, 100), (0, 0)]
