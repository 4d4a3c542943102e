"""A redis+list publish whose push the server confirmed is never pushed again by the
retry that follows a connection lost afterwards: the retry only trims (``maxlen``) and
waits for the replicas (``replicas=``). Before, a bounded publish that found the trim
script gone from the server (``NOSCRIPT``: the first on a fresh server, or after
``SCRIPT FLUSH``) pushed the message, and a connection lost in the trim run after it
made the retry push it a second time; so did, with ``replicas=``, a connection lost
before the ``WAIT`` answered. Against real redis-servers, each the test's own (the
script cache is flushed); the lost connection is a one-time failure injected into the
trim script's call (or right after the push, before the ``WAIT``): it stands for the
connection dropping at that moment. Sync and asyncio. A retry with ``replicas=`` writes
first (a member added to and removed from the topic's ``scheduled`` ZSET, in one
script): its ``WAIT``, on a new connection, then covers the lost attempt's push (Redis
7.2+ notes a connection's replication offset only at a write); checked as the master's
replication offset growing in the retry's write."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis.list import scripts
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


def _queued(server: RedisServer) -> list[bytes]:
    client = server.client()
    try:
        lists = [key for key in client.keys("*") if client.type(key) == b"list"]
        return [value for key in sorted(lists) for value in client.lrange(key, 0, -1)]
    finally:
        client.close()


def _flush_scripts(server: RedisServer) -> None:
    client = server.client()
    try:
        client.script_flush()
    finally:
        client.close()


def _url(server: RedisServer, query: str) -> str:
    return server.url("redis+list") + "?" + query


@pytest.mark.parametrize("query", ["maxlen=100", "maxlen=100&replicas=1&replica_timeout=30"])
def test_a_trim_lost_after_a_noscript_does_not_push_again(
    master: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    lose = lose_script_once(monkeypatch, scripts.TRIM)
    with brokerkit.connect(_url(master, query), prefix=prefix) as broker:
        _flush_scripts(master)
        lose.armed = True
        broker.publish(TOPIC, {"n": 0})
    assert lose.lost == 1
    assert [value.count(b'"n":0') for value in _queued(master)] == [1]


def test_an_asyncio_trim_lost_after_a_noscript_does_not_push_again(
    master: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lose = lose_script_once(monkeypatch, scripts.TRIM)

    async def main() -> None:
        async with brokerkit.aio.connect(_url(master, "maxlen=100"), prefix=prefix) as broker:
            await asyncio.to_thread(_flush_scripts, master)
            lose.armed = True
            await broker.publish(TOPIC, {"n": 0})

    asyncio.run(asyncio.wait_for(main(), 60))
    assert lose.lost == 1
    assert [value.count(b'"n":0') for value in _queued(master)] == [1]


def test_a_wait_lost_after_the_push_does_not_push_again(
    master: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits = watch_waits(master, monkeypatch, lose_first=True)
    with brokerkit.connect(_url(master, "replicas=1&replica_timeout=30"), prefix=prefix) as broker:
        broker.publish(TOPIC, {"n": 0})
    assert waits.lost
    assert waits.moved == [True]
    assert [value.count(b'"n":0') for value in _queued(master)] == [1]


def test_an_asyncio_wait_lost_after_the_push_does_not_push_again(
    master: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits = watch_async_waits(master, monkeypatch, lose_first=True)

    async def main() -> None:
        url = _url(master, "maxlen=100&replicas=1&replica_timeout=30")
        async with brokerkit.aio.connect(url, prefix=prefix) as broker:
            await broker.publish(TOPIC, {"n": 0})

    asyncio.run(asyncio.wait_for(main(), 60))
    assert waits.lost
    assert [value.count(b'"n":0') for value in _queued(master)] == [1]


@pytest.mark.parametrize("query", ["replicas=1", "replicas=1&maxlen=100"])
def test_the_wait_follows_a_write_on_its_own_connection(
    master: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    """The push's transaction goes on a connection of the pool (a redis-py pipeline
    does not use the pinned one): the connection that WAITs writes after it, else on
    Redis 7.2+ its WAIT returned at once. Checked as the last command the server saw
    on the WAIT's connection before the WAIT (``CLIENT LIST``): a script (EVALSHA), not nothing
    since its ``CLIENT ID``."""
    waits = watch_waits(master, monkeypatch)
    url = _url(master, query + "&replica_timeout=30")
    with brokerkit.connect(url, prefix=prefix) as broker:
        broker.publish(TOPIC, {"n": 0})
    assert waits.last == ["evalsha"]
    assert [value.count(b'"n":0') for value in _queued(master)] == [1]
