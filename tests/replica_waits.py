"""What the tests of a write's replica wait share: a private master with a replica of
its own; the last command a connection of it ran (``CLIENT LIST``), to see that the
connection that sends ``WAIT`` wrote first (Redis 7.2+ ``WAIT`` covers only its own
connection's writes); a script run, or a wait, lost once as a dropped connection
would lose it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from brokerkit.backends.redis import _durable, _durable_async, _lua, _lua_async
from tests.redis_server import RedisServer

__all__ = [
    "LoseOnce",
    "Waits",
    "last_command",
    "lose_script_once",
    "master_with_replica",
    "replication_offset",
    "watch_async_waits",
    "watch_waits",
]


@contextmanager
def master_with_replica() -> Iterator[RedisServer]:
    """A private master with a replica of its own (``WAIT 1`` is answered); no
    replication pings: only writes move its replication offset."""
    with RedisServer(config=("--repl-ping-replica-period", "3600")) as server:
        replica = RedisServer().start(replica_of=server)
        try:
            yield server
        finally:
            replica.stop()


def last_command(server: RedisServer, ident: int) -> str:
    """The last command the connection of ``CLIENT ID`` ``ident`` ran (``evalsha``)."""
    admin = server.client()
    try:
        listed = admin.execute_command("CLIENT", "LIST", "ID", ident)
    finally:
        admin.close()
    text = listed.decode() if isinstance(listed, bytes) else str(listed)
    fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
    return fields["cmd"]


def replication_offset(server: RedisServer) -> int:
    """The master's replication offset: it grows with every write."""
    client = server.client()
    try:
        return int(client.info("replication")["master_repl_offset"])
    finally:
        client.close()


class LoseOnce:
    """Armed, the next run of a script holding :attr:`text` on a given connection fails
    once as a lost connection would (the script does not run); :attr:`lost` counts it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.armed = False
        self.lost = 0

    def take(self, script: str, client: Any) -> bool:
        if self.armed and client is not None and self.text in script:
            self.armed = False
            self.lost += 1
            return True
        return False


def lose_script_once(monkeypatch: pytest.MonkeyPatch, text: str) -> LoseOnce:
    """Patch brokerkit's script calls (sync and asyncio) so that, once armed, the next
    run of the script holding ``text`` on a given connection is lost."""
    lose = LoseOnce(text)
    real, real_async = _lua.Lua.__call__, _lua_async.AsyncLua.__call__

    def flaky(self: _lua.Lua, keys: Any = (), args: Any = (), client: Any = None) -> Any:
        if lose.take(self.script, client):
            raise RedisConnectionError("connection lost while the script ran")
        return real(self, keys, args, client)

    async def flaky_async(
        self: _lua_async.AsyncLua, keys: Any = (), args: Any = (), client: Any = None
    ) -> Any:
        if lose.take(self.script, client):
            raise RedisConnectionError("connection lost while the script ran")
        return await real_async(self, keys, args, client)

    monkeypatch.setattr(_lua.Lua, "__call__", flaky)
    monkeypatch.setattr(_lua_async.AsyncLua, "__call__", flaky_async)
    return lose


@dataclass
class Waits:
    """What the connections that wait for replicas did, attempt by attempt."""

    #: per attempt that waited: the last command its connection ran before ``WAIT``
    last: list[str] = field(default_factory=list)
    #: attempts lost after their write, before ``WAIT`` answered
    lost: int = 0
    #: per attempt after a lost one: whether the master's offset grew during it
    moved: list[bool] = field(default_factory=list)


def watch_waits(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch, *, lose_first: bool = False
) -> Waits:
    """Watch the sync replica waits; with ``lose_first``, the first attempt's connection
    is lost after its write, before its ``WAIT`` answers."""
    waits = Waits()
    real = _durable.ReplicaWait.run_counted

    def watched(self: _durable.ReplicaWait, key: str, write: Any) -> Any:
        def noted(connection: redis.Redis) -> Any:
            ident = connection.execute_command("CLIENT", "ID")
            before = replication_offset(server)
            result = write(connection)
            if lose_first and not waits.lost:
                waits.lost += 1
                raise RedisConnectionError("connection lost before WAIT answered")
            if waits.lost:
                waits.moved.append(replication_offset(server) > before)
            waits.last.append(last_command(server, ident))
            return result

        return real(self, key, noted)

    monkeypatch.setattr(_durable.ReplicaWait, "run_counted", watched)
    return waits


def watch_async_waits(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch, *, lose_first: bool = False
) -> Waits:
    """:func:`watch_waits` for the asyncio replica waits."""
    waits = Waits()
    real = _durable_async.AsyncReplicaWait.run_counted

    async def watched(self: _durable_async.AsyncReplicaWait, key: str, write: Any) -> Any:
        async def noted(connection: Any) -> Any:
            ident = await connection.execute_command("CLIENT", "ID")
            result = await write(connection)
            if lose_first and not waits.lost:
                waits.lost += 1
                raise RedisConnectionError("connection lost before WAIT answered")
            waits.last.append(await asyncio.to_thread(last_command, server, ident))
            return result

        return await real(self, key, noted)

    monkeypatch.setattr(_durable_async.AsyncReplicaWait, "run_counted", watched)
    return waits
