"""How redis+list runs its Redis operations: the first attempt costs no more than the
command itself (and a look at whether an outage of some broker is under way, to end
its broker's); only after an error comes the slow path, which retries through
connection loss (with backoff and jitter) and turns a WRONGTYPE reply into an
:class:`~brokerkit.exceptions.IncompatibleTopic` naming the key and both types."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import redis
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisClusterException

from brokerkit._url import BrokerURL
from brokerkit.backends.redis._client_async import Reconnector
from brokerkit.backends.redis._closing import CloseSignal
from brokerkit.backends.redis._connection import TRANSIENT_ERRORS, translate_errors
from brokerkit.backends.redis._held_async import AsyncReader
from brokerkit.backends.redis._lua_async import AsyncLua
from brokerkit.backends.redis._outages import _outages, outage_ended
from brokerkit.backends.redis.list.keys import ListKeys
from brokerkit.backends.redis.list.plan import as_text
from brokerkit.exceptions import IncompatibleTopic

__all__ = ["AsyncListCalls", "lease_batch", "read_batches"]

_T = TypeVar("_T")


class AsyncListCalls:
    """Runs operations on one broker's connection, every error a brokerkit one.

    :param client: the broker's client (asked for key types after a WRONGTYPE).
    :param url: the broker's URL, for messages (its password masked).
    :param reconnect_timeout: how long a call without a reconnector of its own retries.
    :param keys_of: the keys of a topic.
    :param closing: the broker's close, which ends the retries of such a call as it begins.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        url: BrokerURL,
        reconnect_timeout: float,
        keys_of: Callable[[str], ListKeys],
        closing: CloseSignal | None = None,
    ) -> None:
        self._client = client
        self._url = url
        self._reconnect_timeout = reconnect_timeout
        self._keys_of = keys_of
        self._closing = closing

    async def __call__(
        self,
        operation: Callable[[], Awaitable[_T]],
        topic: str,
        reconnector: Reconnector | None = None,
    ) -> _T:
        """``await operation()``, retried through connection loss by ``reconnector`` (a
        new one if none), which is left with ``reconnected`` set when it retried.

        :raises IncompatibleTopic: a key of ``topic`` holds another Redis type.
        :raises ConnectionFailed: the server stayed away for the reconnect timeout.
        """
        try:
            result = await operation()
        except (redis.RedisError, RedisClusterException) as exc:
            first = exc
        else:
            if _outages:  # (an outage of some broker under way: this one's ends)
                outage_ended(self._closing, self._url)
            return result
        if not isinstance(first, TRANSIENT_ERRORS):
            await self._raise(first, topic)

        async def checked() -> _T:
            try:
                return await operation()
            except redis.ResponseError as exc:
                await self._raise(exc, topic)

        runner = reconnector or Reconnector(
            self._url, self._reconnect_timeout, closing=self._closing
        )
        # The reply of the first attempt may have been lost on the way.
        runner.reconnected = True
        return await runner.call(checked, topic=topic)

    async def _raise(self, exc: redis.RedisError | RedisClusterException, topic: str) -> NoReturn:
        if isinstance(exc, redis.ResponseError) and "WRONGTYPE" in str(exc):
            raise await self.wrong_type(topic) from exc
        with translate_errors(self._url, topic):
            raise exc
        raise AssertionError("translate_errors re-raises")  # pragma: no cover

    def wrong_key(self, topic: str, key: str, found: str, expected: str) -> IncompatibleTopic:
        """The error for ``key`` of ``topic`` holding a ``found``, not an ``expected``:
        for its queue, in redis+stream's words ("is stored in a Redis key of another
        type"), naming the key and both types."""
        if key == self._keys_of(topic).queue:
            return IncompatibleTopic(
                f"the topic {topic!r} at {self._url} is stored in a Redis key of another "
                f"type ({key!r} holds a {found}, not a {expected}; maybe written by another "
                "program or another brokerkit backend such as redis+stream); use another "
                "topic or prefix, or delete that key"
            )
        return IncompatibleTopic(
            f"the topic {topic!r} cannot be used as a redis+list queue: the Redis key "
            f"{key!r} at {self._url} holds a {found}, not a {expected} (written by "
            "another program, or by another brokerkit backend such as redis+stream); "
            "use another topic or prefix, or delete that key"
        )

    async def wrong_type(self, topic: str) -> IncompatibleTopic:
        """The error for a WRONGTYPE reply on ``topic``: names the first key found
        holding another type than redis+list needs, and both types."""
        keys = self._keys_of(topic)
        for key, expected in keys.expected_types().items():
            try:
                found = as_text(await self._client.type(key))
            except redis.RedisError:
                break
            if found not in ("none", expected):
                return self.wrong_key(topic, key, found, expected)
        return IncompatibleTopic(
            f"a key of the topic {topic!r} at {self._url} holds another Redis type than "
            "redis+list needs; use another topic or prefix"
        )


async def lease_batch(
    client: aioredis.Redis,
    reader: AsyncReader,
    batches: list[str],
    keys: list[str],
    args: list[Any],
    wait: tuple[str, str, float] | None,
    fetch: AsyncLua,
) -> tuple[list[Any], list[list[bytes]] | None] | None:
    """The ``fetch`` script's reply and the elements of each of its ``batches`` (None:
    a read failed), or None where it did not run; with ``wait`` (queue, processing list,
    seconds), a ``BLMOVE`` first, raised only when nothing was leased (see
    :data:`.scripts.FETCH`). One send, on the consumer's ``reader`` but on a cluster."""
    target: Any = client
    if isinstance(target, aioredis.RedisCluster):
        if wait is not None:
            queue, processing, block = wait
            moved = await target.blmove(queue, processing, block, "RIGHT", "RIGHT")  # type: ignore[arg-type]  # Redis takes seconds as a float
            if moved is None:
                return None
        reply = await fetch(keys=keys, args=args)
        return reply, await _leased(target, batches, reply)
    commands: list[tuple[Any, ...]] = []
    if wait is not None:
        queue, processing, block = wait
        commands.append(("BLMOVE", queue, processing, "RIGHT", "RIGHT", block))
    commands.append(("EVALSHA", fetch.sha, len(keys), *keys, *args))
    commands.extend(("LRANGE", batch, 0, -1) for batch in batches)
    replies = await reader.execute_many(*commands)
    at = 0 if wait is None else 1
    moved = replies[0] if wait is not None else None
    reply, read = replies[at], replies[at + 1 :]
    if isinstance(reply, NoScriptError):
        if isinstance(moved, Exception):
            raise moved  # nothing moved and nothing leased: no script to load for it
        # Not loaded on this server yet (it did not run): loaded and run now, it finds
        # what the BLMOVE moved still at the tail of the list.
        reply = await fetch(keys=keys, args=args)
        read = await _leased(target, batches, reply)
    if isinstance(reply, Exception):
        raise reply
    if read is not None:
        for elements in read:
            if isinstance(elements, Exception):
                raise elements
    if isinstance(moved, Exception) and not reply[0]:
        raise moved
    return reply, read


async def _leased(target: Any, batches: list[str], reply: list[Any]) -> Any:
    """The elements of the ``batches`` the fetch script leased (``reply``), or ``None``
    when the connection failed on the way: the caller reads them again, not the
    script."""
    if not reply[0]:
        return []
    try:
        return await read_batches(target, batches)
    except TRANSIENT_ERRORS:
        return None


async def read_batches(client: Any, batches: list[str]) -> list[list[bytes]]:
    """The elements of each of these batch lists (of one consumer: one cluster slot), in
    one round trip."""
    pipe = client.pipeline(transaction=False)
    for batch in batches:
        pipe.lrange(batch, 0, -1)
    return list(await pipe.execute())
