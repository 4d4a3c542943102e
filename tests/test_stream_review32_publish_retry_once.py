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
from typing import Any

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis import _durable, _durable_async, _lua, _lua_async
from brokerkit.backends.redis.stream import group_scripts
from tests.redis_server import RedisServer
from tests.replica_waits import master_with_replica

TOPIC = "orders"


@pytest.fixture
def master() -> Iterator[RedisServer]:
    with master_with_replica() as server:
        yield server


class _LoseOnce:
    """Armed, the next trim script run on a given connection fails once as a lost
    connection would (the script does not run)."""

    def __init__(self) -> None:
        self.armed = False
        self.lost = 0

    def take(self, script: str, client: Any) -> bool:
        if self.armed and client is not None and group_scripts.TRIM_AGE in script:
            self.armed = False
            self.lost += 1
            return True
        return False


def _entries(server: RedisServer, prefix: str) -> list[bytes]:
    client = server.client()
    try:
        return [f[b"body"] for _, f in client.xrange(f"{prefix}:{{{TOPIC}}}")]
    finally:
        client.close()


def _offset(server: RedisServer) -> int:
    client = server.client()
    try:
        return int(client.info("replication")["master_repl_offset"])
    finally:
        client.close()


def _url(server: RedisServer, query: str) -> str:
    return server.url("redis+stream") + "?replicas=1&replica_timeout=30&" + query


def test_a_trim_lost_after_the_xadd_does_not_add_the_message_again(
    master: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lose = _LoseOnce()
    real = _lua.Lua.__call__

    def flaky(self: _lua.Lua, keys: Any = (), args: Any = (), client: Any = None) -> Any:
        if lose.take(self.script, client):
            raise RedisConnectionError("connection lost while the trim ran")
        return real(self, keys, args, client)

    monkeypatch.setattr(_lua.Lua, "__call__", flaky)
    with brokerkit.connect(_url(master, "max_age=60"), prefix=prefix) as broker:
        lose.armed = True
        broker.publish(TOPIC, {"n": 1})
    assert lose.lost == 1
    assert _entries(master, prefix) == [b'{"n":1}']


def test_an_asyncio_trim_lost_after_the_xadd_does_not_add_the_message_again(
    master: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lose = _LoseOnce()
    real = _lua_async.AsyncLua.__call__

    async def flaky(
        self: _lua_async.AsyncLua, keys: Any = (), args: Any = (), client: Any = None
    ) -> Any:
        if lose.take(self.script, client):
            raise RedisConnectionError("connection lost while the trim ran")
        return await real(self, keys, args, client)

    monkeypatch.setattr(_lua_async.AsyncLua, "__call__", flaky)

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
    lost: list[str] = []
    real = _durable.ReplicaWait.run_counted

    moved: list[bool] = []

    def flaky(self: _durable.ReplicaWait, key: str, write: Any) -> Any:
        def then_lost(connection: redis.Redis) -> Any:
            before = _offset(master)
            result = write(connection)
            if not lost:
                lost.append(key)
                raise RedisConnectionError("connection lost before WAIT answered")
            # the retry's own write: its WAIT covers the lost attempt's (Redis 7.2+)
            moved.append(_offset(master) > before)
            return result

        return real(self, key, then_lost)

    monkeypatch.setattr(_durable.ReplicaWait, "run_counted", flaky)
    with brokerkit.connect(_url(master, query), prefix=prefix) as broker:
        broker.publish(TOPIC, {"n": 1})
    assert lost
    assert moved == [True]
    assert _entries(master, prefix) == [b'{"n":1}']


def test_an_asyncio_wait_lost_after_the_xadd_does_not_add_the_message_again(
    master: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lost: list[str] = []
    real = _durable_async.AsyncReplicaWait.run_counted

    async def flaky(self: _durable_async.AsyncReplicaWait, key: str, write: Any) -> Any:
        async def then_lost(connection: Any) -> Any:
            result = await write(connection)
            if not lost:
                lost.append(key)
                raise RedisConnectionError("connection lost before WAIT answered")
            return result

        return await real(self, key, then_lost)

    monkeypatch.setattr(_durable_async.AsyncReplicaWait, "run_counted", flaky)

    async def main() -> None:
        async with brokerkit.aio.connect(_url(master, "maxlen=1000"), prefix=prefix) as broker:
            await broker.publish(TOPIC, {"n": 1})

    asyncio.run(asyncio.wait_for(main(), 60))
    assert lost
    assert _entries(master, prefix) == [b'{"n":1}']
