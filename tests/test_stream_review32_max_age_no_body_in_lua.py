"""A single redis+stream publish with ``max_age`` stores its message with a plain
``XADD`` and trims by the server's clock with a script that takes no body (sent together,
one round trip): the body is never copied into Lua. Since d316b0f (the server's clock for
``max_age``) it ran the publish script, body and all (100 B: 28 -> 48 us a publish at the
client, 1 MB: 1.4 ms of server time in the script). Checked with the script cache flushed
first: the publish script is never loaded again, the trim script is (``NOSCRIPT``
answered, loaded, run once more), the message is stored exactly once and the old entry is
trimmed. On one server, sync and asyncio, and on the 3+3 Redis Cluster (also waiting for a
replica, ``replicas=1``). Against real redis-servers: the single-server cases on one of
their own, as they flush its script cache (the session's server may be a shared one,
``BROKERKIT_TEST_REDIS_URL``)."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
import redis

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis.stream import group_scripts, scripts
from tests.redis_cluster import RedisClusterSet
from tests.redis_server import RedisServer

TOPIC = "orders"
PUBLISH_SHA = hashlib.sha1(scripts.PUBLISH.encode()).hexdigest()
TRIM_SHA = hashlib.sha1(group_scripts.TRIM_AGE.encode()).hexdigest()


def _check(client: redis.Redis, key: str) -> None:
    entries = client.xrange(key)
    assert [fields[b"body"] for _, fields in entries] == [b'{"n":1}']
    assert client.script_exists(PUBLISH_SHA, TRIM_SHA) == [False, True]


@pytest.mark.parametrize("trim", [{"max_age": "60"}, {"max_age": "60", "maxlen": "1000"}])
def test_a_max_age_publish_copies_no_body_into_lua(
    redis_server: RedisServer, prefix: str, trim: dict[str, str]
) -> None:
    key = f"{prefix}:{{{TOPIC}}}"
    client = redis_server.client()
    client.xadd(key, {"body": "old"}, id="1-1")  # from 1970, by the server's ids
    url = (
        redis_server.url("redis+stream")
        + "?trim_exact=true&"
        + "&".join(f"{name}={value}" for name, value in trim.items())
    )
    with brokerkit.connect(url, prefix=prefix) as broker:
        client.script_flush()
        broker.publish(TOPIC, {"n": 1})
    _check(client, key)
    client.close()


def test_an_asyncio_max_age_publish_copies_no_body_into_lua(
    redis_server: RedisServer, prefix: str
) -> None:
    key = f"{prefix}:{{{TOPIC}}}"
    client = redis_server.client()
    client.xadd(key, {"body": "old"}, id="1-1")

    async def main() -> None:
        url = redis_server.url("redis+stream") + "?max_age=60&trim_exact=true"
        async with brokerkit.aio.connect(url, prefix=prefix) as broker:
            await asyncio.to_thread(client.script_flush)
            await broker.publish(TOPIC, {"n": 1})

    asyncio.run(asyncio.wait_for(main(), 60))
    _check(client, key)
    client.close()


@pytest.mark.parametrize("replicas", ["0", "1"])
def test_a_max_age_publish_on_a_cluster_copies_no_body_into_lua(
    redis_cluster: RedisClusterSet, prefix: str, replicas: str
) -> None:
    key = f"{prefix}:{{{TOPIC}}}"
    node = redis_cluster.master_of(key).client()
    try:
        node.xadd(key, {"body": "old"}, id="1-1")
        url = redis_cluster.url(
            "redis+stream", max_age="60", trim_exact="true", replicas=replicas, replica_timeout="5"
        )
        with brokerkit.connect(url, prefix=prefix) as broker:
            node.script_flush()
            broker.publish(TOPIC, {"n": 1})
        _check(node, key)
        node.delete(key)
    finally:
        node.close()
