"""The client of the master a Redis Sentinel set names: its connections ask the
sentinels where the master is however they (re)connect, and its close closes the
connections to the sentinels too."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from brokerkit._url import BrokerURL
from brokerkit.backends.redis._connection import note_url_reached
from brokerkit.backends.redis._tls import AsyncSharedContextSSLConnection

__all__ = ["MasterConnection", "MasterSSLConnection", "SentinelMaster", "note_reached_once_named"]


class SentinelMaster(aioredis.Redis):
    """A client of the master the sentinels name whose close also closes its
    connections to the sentinels (redis-py leaves those to the ``Sentinel``, which
    nothing else keeps), so that a closed broker holds no connection at all."""

    async def aclose(self, *args: Any, **kwargs: Any) -> None:
        """Close the master's connections, then every sentinel's, each even when one
        before it failed to close; the first failure is raised after them all."""
        errors: list[BaseException] = []
        try:
            await super().aclose(*args, **kwargs)
        except BaseException as error:  # raised below, after the rest
            errors.append(error)
        pool: Any = self.connection_pool
        for sentinel in pool.sentinel_manager.sentinels:
            try:
                await sentinel.aclose()
            except BaseException as error:  # raised below
                errors.append(error)
        if errors:
            raise errors[0]


class MasterConnection(aioredis.sentinel.SentinelManagedConnection):
    """A connection to the master the sentinels name, however it (re)connects.

    redis-py's Sentinel-managed connection asks the sentinels only in ``connect()``; a
    command retried after a dropped connection reconnects through
    ``connect_check_health()``, which would dial the connection's default address
    (localhost:6379) instead of the master. Asking here covers both ways.
    """

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if not self.is_connected and self.connection_pool.is_master:
            self.host, self.port = await self.connection_pool.get_master_address()
        await super().connect_check_health(check_health, retry_socket_connect)


class MasterSSLConnection(MasterConnection, AsyncSharedContextSSLConnection):
    """:class:`MasterConnection` over TLS."""


def note_reached_once_named(sentinels: Any, url: BrokerURL) -> None:
    """Note ``url``'s Sentinel set reached whenever it names a master (every lookup of
    the master's pool, and of its pub/sub subscriptions, asks ``discover_master``): a
    master that does not answer then (killed, and not yet replaced by the sentinels) is
    ridden out as after any failover, also by a process that has not reached it yet,
    instead of reported as "nothing answered" at the sentinels' addresses."""
    discover_master = sentinels.discover_master

    async def named(*args: Any, **kwargs: Any) -> Any:
        address = await discover_master(*args, **kwargs)
        note_url_reached(url)
        return address

    sentinels.discover_master = named
