"""Writes that wait for replicas (the ``replicas`` option): Redis ``WAIT`` on the
connection that made the write.

Redis replication is asynchronous: a master acknowledges a write before any replica
has it, and a failover in that moment loses it. ``WAIT n ms`` blocks until ``n``
replicas have every write made *on that connection*, so the write and its ``WAIT`` go
on one connection to the master that serves the key: the client's own (one connection
taken from its pool) on one server or under Sentinel, and on a cluster a connection to
the node that serves the key's slot (a ``MOVED`` reply refreshes the cluster's map and
is retried by the caller, as any topology change).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisClusterException
from redis.exceptions import TimeoutError as RedisTimeoutError

from brokerkit._url import BrokerURL
from brokerkit.backends.redis._connection import TOPOLOGY_ERRORS, connection_kwargs
from brokerkit.backends.redis._deployment import Deployment
from brokerkit.backends.redis._options import RedisOptions
from brokerkit.exceptions import ReplicationTimeout

__all__ = ["RETRY_MARK", "AsyncReplicaWait", "mark_retry", "replica_wait"]

#: The member a retried write adds to and removes from a ZSET of its key's slot.
RETRY_MARK = "brokerkit:retried"
_MARK = "redis.call('ZADD', KEYS[1], 0, ARGV[1]) redis.call('ZREM', KEYS[1], ARGV[1])"
_MARK_SHA = hashlib.sha1(_MARK.encode()).hexdigest()

#: Errors after which a cluster's map of slots to nodes may be out of date.
_REFRESH_ON: tuple[type[Exception], ...] = (
    *TOPOLOGY_ERRORS,
    RedisConnectionError,
    RedisTimeoutError,
)

_T = TypeVar("_T")


class AsyncReplicaWait:
    """Runs writes on one connection to a key's master, then ``WAIT``\\ s for replicas.

    :param client: the broker's client (a cluster client on a cluster).
    :param url: the broker's URL (for node connections and messages).
    :param replicas: how many replicas must confirm each write.
    :param timeout: seconds to wait for them.
    :param cluster: whether ``client`` is a cluster client.
    :param retries: how often the connections to a cluster's nodes resend a command
        after a lost connection (``None``: redis-py's default); 0 for scripts that must
        not run twice unknowingly (the caller retries, telling them so).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        url: BrokerURL,
        replicas: int,
        timeout: float,
        *,
        cluster: bool,
        retries: int | None = None,
    ) -> None:
        self._client = client
        self._url = url
        self.replicas = replicas
        self._timeout_ms = max(1, int(timeout * 1000))
        self._cluster = cluster
        self._retries = retries
        self._nodes: dict[tuple[str, int], aioredis.Redis] = {}

    @property
    def timeout(self) -> float:
        """Seconds each ``WAIT`` waits for the replicas."""
        return self._timeout_ms / 1000

    async def run(self, key: str, write: Callable[[aioredis.Redis], Awaitable[_T]]) -> _T:
        """``write(connection)``, then ``WAIT`` on that connection.

        :raises ReplicationTimeout: fewer replicas confirmed the write in time (it is
            made on the master, not undone).
        """
        result, confirmed = await self.run_counted(key, write)
        if confirmed < self.replicas:
            raise ReplicationTimeout(
                f"Redis at {self._url} stored the write, but only {confirmed} of the "
                f"{self.replicas} replicas asked for (replicas=) confirmed it within "
                f"{self.timeout:g} s (replica_timeout=); a failover now may lose it",
                acknowledged=confirmed,
                wanted=self.replicas,
            )
        return result

    async def run_counted(
        self, key: str, write: Callable[[aioredis.Redis], Awaitable[_T]]
    ) -> tuple[_T, int]:
        """``write(connection)``, then ``WAIT`` on that connection: its result and how
        many replicas confirmed it in time (fewer than :attr:`replicas` raises nothing
        here: a caller with more writes to make makes them first)."""
        try:
            master: Any = await self._master_of(key)
            pinned: Any = master.client()  # one connection, held to the end
            try:
                result = await write(pinned)
                confirmed = int(
                    await pinned.execute_command("WAIT", self.replicas, self._timeout_ms)
                )
            finally:
                await pinned.aclose()
        except _REFRESH_ON:
            if self._cluster:  # a node went away or a slot moved: learn the new map
                with contextlib.suppress(*_REFRESH_ON, RedisClusterException):
                    await self._client.nodes_manager.initialize()  # type: ignore[attr-defined]
            raise
        return result, confirmed

    async def _master_of(self, key: str) -> aioredis.Redis:
        if not self._cluster:
            return self._client
        cluster: Any = self._client
        try:
            node = cluster.get_node_from_key(key)
        except (RedisClusterException, IndexError, KeyError):
            node = None
        if node is None:  # the map is not loaded yet: any command loads it
            await cluster.ping()
            node = cluster.get_node_from_key(key)
        address = (str(node.host), int(node.port))
        found = self._nodes.get(address)
        if found is None:
            kwargs = connection_kwargs(self._url)
            if self._retries is not None:
                kwargs["retry"] = aioredis.retry.Retry(NoBackoff(), self._retries)
            found = aioredis.Redis(host=address[0], port=address[1], **kwargs)
            self._nodes[address] = found
        return found

    async def aclose(self) -> None:
        """Close the connections to the cluster's nodes."""
        nodes, self._nodes = list(self._nodes.values()), {}
        for node in nodes:
            await node.aclose()


async def mark_retry(connection: Any, zset: str) -> None:
    """Write on ``connection`` something that reaches the replicas and leaves ``zset``
    as it was (:data:`RETRY_MARK` added and removed, in one script: no one sees it).
    For a retry that finds its write made by the lost attempt, or a write that went on
    another connection (a redis-py pipeline takes one of the pool's, not the pinned
    one): the ``WAIT`` on ``connection`` then covers that write too. (Redis 7.2 and
    later note a connection's replication offset only at a command that wrote: a
    connection that wrote nothing has a ``WAIT`` that returns at once, confirming
    nothing.)"""
    try:
        await connection.execute_command("EVALSHA", _MARK_SHA, 1, zset, RETRY_MARK)
    except NoScriptError:  # by EVALSHA, as every script: the documented ACL has no EVAL
        await connection.execute_command("SCRIPT", "LOAD", _MARK)
        await connection.execute_command("EVALSHA", _MARK_SHA, 1, zset, RETRY_MARK)


def replica_wait(
    client: aioredis.Redis, url: BrokerURL, options: RedisOptions, *, retries: int | None = None
) -> AsyncReplicaWait | None:
    """The broker's :class:`AsyncReplicaWait` on ``client`` (``retries``: see there),
    or None when ``replicas`` is 0."""
    if not options.replicas:
        return None
    cluster = Deployment.of(url, options).kind == "cluster"
    return AsyncReplicaWait(
        client, url, options.replicas, options.replica_timeout, cluster=cluster, retries=retries
    )
