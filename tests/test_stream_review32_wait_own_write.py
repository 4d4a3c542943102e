"""A redis+stream ``replicas=`` write's ``WAIT`` follows a write on its own connection.

Redis 7.2 and later note a connection's replication offset only at a command that
wrote: a ``WAIT`` on a connection that wrote nothing returns at once, confirming
nothing. Two paths waited so: a settlement of several members of one stream
(``broker.ack(d1, d2)`` of two consumers of a group) ran its scripts in a redis-py
pipeline, on a connection of the pool, and ``WAIT``\\ ed on the pinned one; and a batch
(or held) publish retried after every one of its scripts had answered (the connection
lost before the ``WAIT`` answered) sent nothing before its ``WAIT``. The pinned
connection now writes (a member added to and removed from the topic's ``scheduled``
ZSET, one script by ``EVALSHA``) before it waits. Only Redis 6.2/7.0 run here, where
the early ``WAIT`` does not show: checked as the last command the server saw on the
``WAIT``'s connection before the ``WAIT`` (``CLIENT LIST``): a script (``evalsha``),
not the ``CLIENT ID`` the test sent on it first. Against a private master and its
replica; sync and asyncio."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis.stream.keys import StreamKeyspace
from brokerkit.backends.redis.stream.settle_async import scheduled_of
from tests.redis_server import RedisServer
from tests.replica_waits import master_with_replica, watch_async_waits, watch_waits

TOPIC = "orders"
URL_QUERY = "replicas=1&replica_timeout=30"


@pytest.fixture
def master() -> Iterator[RedisServer]:
    with master_with_replica() as server:
        yield server


def _stored(server: RedisServer) -> int:
    """Messages in the server's streams and ZSETs (published or held)."""
    client = server.client()
    try:
        count = 0
        for key in client.keys("*"):
            kind = client.type(key)
            if kind == b"stream":
                count += client.xlen(key)
            elif kind == b"zset":
                count += client.zcard(key)
        return count
    finally:
        client.close()


def _url(server: RedisServer, query: str = "") -> str:
    return server.url("redis+stream") + "?" + URL_QUERY + query


@pytest.mark.parametrize(
    "template", [None, "events:*", "{app}:events:*"], ids=["prefix", "template", "tagged"]
)
@pytest.mark.parametrize("topic", ["orders", "orders.dlq"])
def test_the_marker_is_the_topics_scheduled_zset(template: str | None, topic: str) -> None:
    keys = StreamKeyspace("bk", template)
    assert scheduled_of(keys.topic(topic)) == keys.topic(topic, "scheduled")


def test_an_ack_of_two_consumers_waits_after_a_write_on_its_connection(
    master: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with brokerkit.connect(_url(master), prefix=prefix) as broker:
        first = broker.subscribe(TOPIC, group="g", consumer="c1")
        second = broker.subscribe(TOPIC, group="g", consumer="c2")
        broker.publish_many(TOPIC, [{"n": n} for n in range(4)])
        # the first pair loads the script: a NOSCRIPT reply ran it again on the
        # pinned connection, which hid the gap
        broker.ack(first.receive(timeout=10), second.receive(timeout=10))
        got = [first.receive(timeout=10), second.receive(timeout=10)]
        assert all(d is not None for d in got)
        last = watch_waits(master, monkeypatch).last
        broker.ack(*got)
    assert last == ["evalsha"]


def test_an_asyncio_ack_of_two_consumers_waits_after_a_write_on_its_connection(
    master: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    last: list[str] = []

    async def main() -> None:
        async with brokerkit.aio.connect(_url(master), prefix=prefix) as broker:
            first = await broker.subscribe(TOPIC, group="g", consumer="c1")
            second = await broker.subscribe(TOPIC, group="g", consumer="c2")
            await broker.publish_many(TOPIC, [{"n": n} for n in range(4)])
            await broker.ack(await first.receive(timeout=10), await second.receive(timeout=10))
            got = [await first.receive(timeout=10), await second.receive(timeout=10)]
            assert all(d is not None for d in got)
            watched = watch_async_waits(master, monkeypatch).last
            await broker.ack(*got)
            last.extend(watched)

    asyncio.run(asyncio.wait_for(main(), 60))
    assert last == ["evalsha"]


@pytest.mark.parametrize("delay", [None, 3600.0], ids=["published", "held"])
def test_a_batch_retried_after_it_answered_writes_before_its_wait(
    master: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch, delay: float | None
) -> None:
    last = watch_waits(master, monkeypatch, lose_first=True).last
    with brokerkit.connect(_url(master), prefix=prefix) as broker:
        broker.publish_many(TOPIC, [{"n": 0}, {"n": 1}], delay=delay)
    assert last == ["evalsha"]
    assert _stored(master) == 2  # once each: the retry sent no script again


def test_an_asyncio_batch_retried_after_it_answered_writes_before_its_wait(
    master: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    last = watch_async_waits(master, monkeypatch, lose_first=True).last

    async def main() -> None:
        async with brokerkit.aio.connect(_url(master), prefix=prefix) as broker:
            await broker.publish_many(TOPIC, [{"n": 0}, {"n": 1}])

    asyncio.run(asyncio.wait_for(main(), 60))
    assert last == ["evalsha"]
