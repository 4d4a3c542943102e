"""The Redis client of a brokerkit backend: built from the URL, retried through
connection loss with backoff and jitter."""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from brokerkit._acompat import sleep
from brokerkit._url import BrokerURL
from brokerkit.backends.redis._connection import (
    CONNECT_TIMEOUT,
    ever_reached,
    note_reached,
    redis_url,
    translate_errors,
)
from brokerkit.backends.redis._keys import Keyspace
from brokerkit.backends.redis._tls import share_tls_context
from brokerkit.exceptions import ConnectionFailed, InvalidURL

__all__ = ["Reconnector", "make_client", "scan_topics"]

_T = TypeVar("_T")

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


def make_client(url: BrokerURL, *, retries: int = 3) -> aioredis.Redis:
    """A redis-py client for ``url`` whose commands retry transient connection
    errors a few times with exponential backoff and jitter.

    Its pool opens as many connections as are used at once (``max_connections`` in
    the URL caps them), on both sides: every consumer blocked in a server-side wait
    holds one, and redis.asyncio's own default cap (100) would fail the 101st with
    "Too many connections" where the sync pool has none.
    """
    timeouts: dict[str, Any] = {}
    if "socket_connect_timeout" not in url.query:
        timeouts["socket_connect_timeout"] = CONNECT_TIMEOUT
    try:
        client = aioredis.Redis.from_url(
            redis_url(url),
            max_connections=2**31,  # redis-py's sync default: no cap in practice
            retry=aioredis.retry.Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
            redis_connect_func=_connected,
            **timeouts,
            **_DRIVER,
        )
    except (ValueError, TypeError) as exc:
        raise InvalidURL(f"{url} is not a valid Redis URL: {exc}") from None
    share_tls_context(client.connection_pool)
    return client


async def scan_topics(client: aioredis.Redis, url: BrokerURL, prefix: str) -> list[str]:
    """The topics that have a key under ``prefix`` (SCAN, so the server is not blocked;
    a topic created or removed during the scan may or may not be listed)."""
    keyspace = Keyspace(prefix)
    found: set[str] = set()
    with translate_errors(url):
        async for key in client.scan_iter(match=keyspace.scan_pattern(), count=1000):
            text = key.decode(errors="replace") if isinstance(key, bytes) else key
            name = keyspace.topic_of(text)
            if name is not None:
                found.add(name)
    return sorted(found)


async def _connected(connection: Any) -> None:
    """A new connection is up: note that the server answered, then shake hands as
    redis-py does."""
    note_reached(getattr(connection, "host", "localhost"), getattr(connection, "port", 6379))
    await connection.on_connect()


class Reconnector:
    """Retries an operation through connection loss and server restarts, with
    exponential backoff and full jitter, for up to ``timeout`` seconds in all.

    Used by consume loops, which must outlive a server restart; one-shot commands
    rely on the client's own short retry. A server this process has never reached is
    not waited for: the first failure is "could not connect" (after the client's own
    short retry, each attempt bounded by :data:`CONNECT_TIMEOUT`).
    """

    def __init__(
        self, url: BrokerURL, timeout: float, *, base: float = 0.05, cap: float = 2.0
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.base = base
        self.cap = cap
        #: Set when a call needed to reconnect; the caller may clear it.
        self.reconnected = False

    async def call(self, operation: Callable[[], Awaitable[_T]], *, topic: str | None = None) -> _T:
        """``operation()``, retried while the error is transient and time remains."""
        deadline = time.monotonic() + self.timeout
        attempt = 0
        while True:
            try:
                with translate_errors(self.url, topic):
                    result = await operation()
            except ConnectionFailed as exc:
                unreachable = isinstance(exc.__cause__, (RedisConnectionError, RedisTimeoutError))
                if unreachable and not ever_reached(self.url):
                    raise  # "could not connect": nothing to ride out
                attempt += 1
                delay = random.uniform(0, min(self.cap, self.base * 2**attempt))
                if time.monotonic() + delay > deadline:
                    raise
                await sleep(delay)
                self.reconnected = True
                continue
            return result
