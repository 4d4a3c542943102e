"""The Redis client of a brokerkit backend: built from the URL, retried through
connection loss with backoff and jitter."""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError, RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from brokerkit._acompat import Waiter, keep_cancellation, sleep
from brokerkit._close_calls import by_the_close
from brokerkit._url import BrokerURL
from brokerkit.backends.redis._closing import CloseSignal
from brokerkit.backends.redis._connection import (
    CONNECT_TIMEOUT,
    CREDENTIAL_ERRORS,
    AsyncClusterBuilder,
    backoff_delay,
    cluster_failure,
    connection_kwargs,
    ever_reached,
    hide_credentials,
    never_answered,
    note_reached,
    note_url_reached,
    redis_url,
    translate_errors,
)
from brokerkit.backends.redis._deployment import Deployment
from brokerkit.backends.redis._options import RedisOptions
from brokerkit.backends.redis._outages import Outage, outage_began, outage_ended, outage_left
from brokerkit.backends.redis._sentinel_health import watch_sentinels
from brokerkit.backends.redis._sentinel_master_async import (
    MasterConnection,
    MasterSSLConnection,
    SentinelMaster,
    note_reached_once_named,
)
from brokerkit.backends.redis._tls import AsyncClusterTLS, share_tls_context
from brokerkit.exceptions import ConnectionFailed, InvalidURL

__all__ = ["CONNECT_RETRIES", "Reconnector", "is_cluster", "make_client", "pause", "time_at"]

_T = TypeVar("_T")

#: How many times a call on a client that retries nothing itself (``retries=0``:
#: redis-py's connect then tries once) tries again to reach a server this process has
#: never reached, with backoff (:data:`CONNECT_BACKOFF`), before "could not connect":
#: the short retry redis-py's own ``retries=3`` gives the other clients.
CONNECT_RETRIES = 3
#: (base, cap) of that backoff, in seconds: redis-py's of :func:`make_client`'s clients.
CONNECT_BACKOFF = (0.05, 1.0)

#: redis-py 8 looks its own version up in the installed package metadata (files on
#: disk) for every new connection unless it is handed a DriverInfo; under asyncio that
#: blocks the event loop for milliseconds per connection. Resolve it once, here.
_DRIVER: dict[str, Any] = {}
try:
    from redis.driver_info import DriverInfo
except ImportError:  # redis-py before 8 resolves the version once, at import
    pass
else:
    _DRIVER["driver_info"] = DriverInfo()


def make_client(
    url: BrokerURL,
    options: RedisOptions | None = None,
    *,
    retries: int = 3,
    read_timeout: float | None = None,
) -> aioredis.Redis:
    """A redis-py client for ``url`` whose commands retry transient connection
    errors a few times with exponential backoff and jitter.

    One server gives a plain client; ``cluster=true`` a cluster client that routes each
    command to the node that serves its key's slot and follows ``MOVED``/``ASK``
    (redis-py's ``RedisCluster``); ``sentinel=<name>`` a client whose connections ask
    the sentinels where the master is (redis-py's ``Sentinel.master_for``). All three
    offer the same commands, so the backends use them alike.

    Its pool opens as many connections as are used at once (``max_connections`` in
    the URL caps them), on both sides: every consumer blocked in a server-side wait
    holds one, and redis.asyncio's own default cap (100) would fail the 101st with
    "Too many connections" where the sync pool has none.

    ``read_timeout`` bounds every read (a frozen server) unless the URL sets
    ``socket_timeout``; by default reads wait as long as the server takes, as the
    blocking commands of a consumer must.

    :raises InvalidURL: the URL and the deployment options do not fit together.
    """
    deployment = Deployment.of(url, options)
    timeouts: dict[str, Any] = {}
    if "socket_connect_timeout" not in url.query:
        timeouts["socket_connect_timeout"] = CONNECT_TIMEOUT
    if read_timeout is not None and "socket_timeout" not in url.query:
        timeouts["socket_timeout"] = read_timeout
    retry = aioredis.retry.Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries)
    try:
        if deployment.kind == "cluster":
            # sync: asks the nodes, riding a failover out; asyncio: no I/O, built once
            cluster = AsyncClusterBuilder.build(
                lambda: aioredis.RedisCluster.from_url(
                    redis_url(_without_retry_on_timeout(url)),
                    startup_nodes=[
                        aioredis.cluster.ClusterNode(h, p)  # type: ignore[no-untyped-call,unused-ignore]
                        for h, p in deployment.hosts
                    ],
                    max_connections=2**31,
                    retry=retry,
                    retry_on_error=[RedisConnectionError, RedisTimeoutError],
                    **timeouts,
                    **_DRIVER,
                    **AsyncClusterTLS.kwargs,
                ),
                url,
                (options or RedisOptions()).reconnect_timeout,
            )
            AsyncClusterTLS.adopt(cluster)
            _note_reached_once_answered(cluster, url)
            return cast(aioredis.Redis, cluster)  # it offers the commands the backends use
        if deployment.kind == "sentinel":
            kwargs = connection_kwargs(url)
            of_sentinels = deployment.sentinel_kwargs(kwargs)
            tls = kwargs.pop("ssl", False)
            kwargs["connection_class"] = MasterSSLConnection if tls else MasterConnection
            sentinels = aioredis.Sentinel(  # type: ignore[no-untyped-call,unused-ignore]
                list(deployment.hosts),
                sentinel_kwargs=of_sentinels,
                **timeouts,
            )
            for sentinel in sentinels.sentinels:
                share_tls_context(sentinel.connection_pool)
            watch_sentinels(sentinels, url, options)
            master = sentinels.master_for(  # type: ignore[no-untyped-call,unused-ignore]
                deployment.master,
                redis_class=SentinelMaster,
                retry=retry,
                retry_on_error=[RedisConnectionError, RedisTimeoutError],
                redis_connect_func=functools.partial(_connected, url=url, via_sentinels=True),
                **{"max_connections": 2**31, **kwargs, **timeouts},
                **_DRIVER,
            )
            note_reached_once_named(sentinels, url)
            return cast(aioredis.Redis, master)  # a Redis whose pool asks the sentinels
        client = aioredis.Redis.from_url(
            redis_url(url),
            max_connections=2**31,  # redis-py's sync default: no cap in practice
            retry=retry,
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
            redis_connect_func=functools.partial(_connected, url=url),
            **timeouts,
            **_DRIVER,
        )
    except (ValueError, TypeError) as exc:
        raise InvalidURL(f"{url} is not a valid Redis URL: {exc}") from None
    except RedisClusterException as exc:  # the sync client asks a seed for the slots at once
        raise cluster_failure(url, exc, "could not be reached") from exc
    except RedisError as exc:  # a node of it, for as long; or an ACL's refusal (COMMAND)
        with translate_errors(url):
            raise exc
    share_tls_context(client.connection_pool)
    return client


def _without_retry_on_timeout(url: BrokerURL) -> BrokerURL:
    """``url`` without ``retry_on_timeout``, which redis.asyncio's ``RedisCluster``
    refuses. A cluster client retries a timeout whatever it says: ``retry_on_error``
    holds ``TimeoutError``, and redis-py's cluster nodes retry nothing themselves."""
    query = {key: value for key, value in url.query.items() if key != "retry_on_timeout"}
    return dataclasses.replace(url, query=query)


def _note_reached_once_answered(cluster: Any, url: BrokerURL) -> None:
    """Note ``url``'s cluster reached once a seed has told it the slots, never sooner: a
    cluster never reached fails at once with "cannot be connected"; after that, a lost
    connection is a node going away, ridden out. The sync client asks the seeds when it
    is built; redis.asyncio's on its first command, in its ``initialize``, which is
    wrapped here until it has once succeeded."""
    if cluster.nodes_manager.slots_cache:
        note_url_reached(url)
        return
    initialize = cluster.initialize

    async def initialized(*args: Any, **kwargs: Any) -> Any:
        try:
            result = await initialize(*args, **kwargs)
        except BaseException:
            if cluster.nodes_manager.slots_cache:  # a seed told the slots, a node did not
                note_url_reached(url)  # answer (a master failing over): ridden out
            raise
        note_url_reached(url)
        vars(cluster).pop("initialize", None)  # done: later commands skip this wrapper
        return result

    cluster.initialize = initialized


async def _connected(connection: Any, url: BrokerURL, *, via_sentinels: bool = False) -> None:
    """A new connection to ``url``'s server is up: shake hands as redis-py does
    (authenticate, select the database), then note that the server answered (and, with
    ``via_sentinels``, the Sentinel set that named it). Noted only after the handshake:
    a server that refuses the credentials was never reached, so its refusal is not
    ridden out as a lost connection. A handshake's error never shows the credentials
    (:func:`hide_credentials`), wherever it is raised or logged from."""
    try:
        await connection.on_connect()
    except Exception as exc:
        hide_credentials(exc, url)
        raise
    note_reached(getattr(connection, "host", "localhost"), getattr(connection, "port", 6379))
    if via_sentinels:
        note_url_reached(url)


class Reconnector:
    """Retries an operation through connection loss and server restarts, with
    exponential backoff and full jitter, for up to ``timeout`` seconds in all.

    Used by consume loops and publishes (and by redis+list's every call), which
    must outlive a server restart or a failover. A server this process has never reached is
    not waited for: the first failure is "could not connect" (after the client's own
    short retry, or for a call on a client that retries nothing, ``connect_retries``
    of brokerkit's; each attempt bounded by :data:`CONNECT_TIMEOUT`), and refused
    credentials are raised at once, however long the server has answered before. A
    pool at its cap (``max_connections``: "Too many connections") is no sign of a
    server never reached: waited for as a lost connection is.

    An outage is logged once per broker (all the reconnectors given one ``closing``
    share it), not per call or retry: a WARNING as the first call fails again at its
    first retry (a connection the server dropped, made again at once, is no outage;
    nor is a pool at its cap), an INFO, with how long it lasted, as the first call
    succeeds after it, or as the last of its calls gives up (then the next call to
    lose Redis logs a new WARNING). It lasts no longer than the retry loops of its
    calls (see :class:`._outages.Outage`).
    """

    def __init__(
        self,
        url: BrokerURL,
        timeout: float,
        *,
        base: float = 0.05,
        cap: float = 2.0,
        closing: CloseSignal | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.base = base
        self.cap = cap
        #: The broker's close, which ends the retries of the calls under way as it begins.
        self.closing = closing
        #: Set when a call needed to reconnect; the caller may clear it.
        self.reconnected = False
        #: What an outage is logged once for (:func:`._outages.outage_began`): the
        #: broker, whose retry loops share its close signal.
        self._scope: object = self if closing is None else closing

    async def call(
        self,
        operation: Callable[[], Awaitable[_T]],
        *,
        topic: str | None = None,
        connect_retries: int = 0,
    ) -> _T:
        """``operation()``, retried while the error is transient and time remains;
        ``connect_retries`` times more, with a short backoff, while the server has
        never answered (for a client that retries nothing itself).

        Once the broker's close has begun (``closing``) a call retries no more: the
        error is raised at once, not after ``timeout``, whether the call was under way
        as the close began or only reached its first failure since (it passed the open
        check just before). The close's own calls (its hand-backs:
        :func:`~brokerkit._close_calls.by_the_close`) retry as before.
        """
        deadline = time.monotonic() + self.timeout
        attempt = unreached = 0
        # The first "could not connect": what a retry of it that fails otherwise while
        # nothing has answered yet (an asyncio cluster client left without nodes tells
        # of a slot not covered) still is, and what giving up says.
        unreachable: ConnectionFailed | None = None
        closing = None if by_the_close() else self.closing
        outage: Outage | None = None  # the outage this call retries through, if any
        gave_up = False
        try:
            while True:
                try:
                    with translate_errors(self.url, topic):
                        result = await keep_cancellation(operation())
                except ConnectionFailed as exc:
                    if isinstance(exc.__cause__, CREDENTIAL_ERRORS):
                        raise  # refused credentials: waiting will not change them
                    if (
                        never_answered(self.url, exc)
                        and not isinstance(exc.__cause__, MaxConnectionsError)
                    ) or (unreachable is not None and not ever_reached(self.url)):
                        unreachable = unreachable or exc
                        if unreached >= connect_retries:
                            raise unreachable from unreachable.__cause__  # nothing to ride out
                        unreached += 1
                        delay = backoff_delay(unreached, *CONNECT_BACKOFF)
                        if not await pause(delay, closing):
                            raise
                        continue
                    attempt += 1
                    delay = backoff_delay(attempt, self.base, self.cap)
                    if time.monotonic() + delay > deadline:
                        gave_up = True
                        raise
                    # (A connection dropped and made again at once is no outage, nor a
                    # pool at its cap: its server answers the calls that hold its
                    # connections.)
                    if attempt > 1 and not isinstance(exc.__cause__, MaxConnectionsError):
                        outage = outage_began(self._scope, self.url, exc, self.timeout, outage)
                    if not await pause(delay, closing):
                        where = f" for the topic {topic!r}" if topic else ""
                        raise ConnectionFailed(
                            f"gave up on Redis at {self.url}{where}: the broker is closing ({exc})"
                        ) from exc
                    self.reconnected = True
                    continue
                outage_ended(self._scope, self.url)
                return result
        finally:
            if outage is not None:
                outage_left(outage, self.url, gave_up=gave_up)


async def pause(delay: float, closing: CloseSignal | None) -> bool:
    """Wait ``delay`` seconds between two attempts of a call, unless the broker's
    close begins (``closing``: the close wakes this wait); whether the call may go on
    (False at once if the close had begun)."""
    if closing is None:
        await sleep(delay)
        return True
    waiter = Waiter()
    if closing.watch(waiter):
        return False
    try:
        await waiter.wait(delay)
    finally:
        closing.unwatch(waiter)
    return not closing.began


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is a cluster client (it has no one connection pool)."""
    return getattr(client, "connection_pool", None) is None


async def time_at(cluster: Any, key: str) -> Any:
    """``TIME`` of the node of ``cluster`` that holds ``key``, whose clock the scripts on
    ``key`` read: not the cluster client's default node, whose clock may differ."""
    return await cluster.execute_command("TIME", target_nodes=cluster.get_node_from_key(key))
