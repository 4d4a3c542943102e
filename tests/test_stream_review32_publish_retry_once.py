"""A single redis+stream publish whose ``XADD`` the server confirmed is never sent
again by the retry that follows a connection lost afterwards: the retry only trims and
waits for the replicas. Before, with ``max_age`` and ``replicas=`` (since 79db747), a
connection lost in the trim script that follows the ``XADD`` made the retry add the
message a second time, as did, with ``replicas=`` alone, a connection lost before the
``WAIT`` answered. Against real redis-servers (a master and its replica, each the
test's own); the lost connection is a one-time failure injected into the trim script's
call (or right after the write, before the ``WAIT``): it stands for the connection
dropping at that moment. Sync and asyncio. A retry that only waits writes first (a
member added to and removed from the topic's ``scheduled`` ZSET, in one script): its
``WAIT``, on a new connection, then covers the lost attempt's ``XADD`` (Redis 7.2+ notes
a connection's replication offset only at a write); checked as the master's replication
offset growing in the retry's write."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis.stream import group_scripts
from tests.redis_server import RedisServer
from tests.replica_waits import (
    lose_script_once,
    master_with_replica,
    watch_async_waits,
    watch_waits,
)

TOPIC = "orders"


@pytest.fixture
def master() -> Iterator[RedisServer]:
    with master_with_replica() as server:
        yield server


def _entries(server: RedisServer, prefix: str) -> list[bytes]:
    client = server.client()
    try:
        return [f[b"body"] for _, f in client.xrange(f"{prefix}:{{{TOPIC}}}")]
    finally:
        client.close()


def _url(server: RedisServer, query: str) -> str:
    return server.url("redis+stream") + "?replicas=1&replica_timeout=30&" + query


def test_a_trim_lost_after_the_xadd_does_not_add_the_message_again(
    master: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lose = lose_script_once(monkeypatch, group_scripts.TRIM_AGE)
    with brokerkit.connect(_url(master, "max_age=60"), prefix=prefix) as broker:
        lose.armed = True
        broker.publish(TOPIC, {"n": 1})
    assert lose.lost == 1
    assert _entries(master, prefix) == [b'{"n":1}']


def test_an_asyncio_trim_lost_after_the_xadd_does_not_add_the_message_again(
    master: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lose = lose_script_once(monkeypatch, group_scripts.TRIM_AGE)

    async def main() -> None:
        async with brokerkit.aio.connect(_url(master, "max_age=60"), prefix=prefix) as broker:
            lose.armed = True
            await broker.publish(TOPIC, {"n": 1})

    asyncio.run(asyncio.wait_for(main(), 60))
    assert lose.lost == 1
    assert _entries(master, prefix) == [b'{"n":1}']


@pytest.mark.parametrize("query", ["max_age=60", "maxlen=1000"])
def test_a_wait_lost_after_the_xadd_does_not_add_the_message_again(
    master: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    waits = watch_waits(master, monkeypatch, lose_first=True)
    with brokerkit.connect(_url(master, query), prefix=prefix) as broker:
        broker.publish(TOPIC, {"n": 1})
    assert waits.lost
    assert waits.moved == [True]
    assert _entries(master, prefix) == [b'{"n":1}']


def test_an_asyncio_wait_lost_after_the_xadd_does_not_add_the_message_again(
    master: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits = watch_async_waits(master, monkeypatch, lose_first=True)

    async def main() -> None:
        async with brokerkit.aio.connect(_url(master, "maxlen=1000"), prefix=prefix) as broker:
            await broker.publish(TOPIC, {"n": 1})

    asyncio.run(asyncio.wait_for(main(), 60))
    assert waits.lost
    assert _entries(master, prefix) == [b'{"n":1}']
