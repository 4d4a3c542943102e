"""How redis+list runs its Redis operations: the first attempt costs no more than the
command itself; only after an error comes the slow path, which retries through
connection loss (with backoff and jitter) and turns a WRONGTYPE reply into an
:class:`~brokerkit.exceptions.IncompatibleTopic` naming the key and both types."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import redis
import redis.asyncio as aioredis
from redis.exceptions import ExecAbortError, NoScriptError, RedisClusterException

from brokerkit._url import BrokerURL
from brokerkit.backends.redis._client_async import Reconnector
from brokerkit.backends.redis._connection import TRANSIENT_ERRORS, translate_errors
from brokerkit.backends.redis._held_async import AsyncReader
from brokerkit.backends.redis._lua_async import AsyncLua
from brokerkit.backends.redis.list.keys import ListKeys
from brokerkit.backends.redis.list.plan import MOVE_BYTES, moves_for, new_nonces
from brokerkit.exceptions import IncompatibleTopic

__all__ = [
    "AsyncListCalls",
    "lease_batch",
    "lease_moved",
    "moves_reply",
    "moves_transaction",
    "read_batches",
]

if TYPE_CHECKING:
    from brokerkit.backends.redis.list.consumer_async import ConsumerState

log = logging.getLogger("brokerkit.redis")

_T = TypeVar("_T")


class AsyncListCalls:
    """Runs operations on one broker's connection, every error a brokerkit one.

    :param client: the broker's client (asked for key types after a WRONGTYPE).
    :param url: the broker's URL, for messages (its password masked).
    :param reconnect_timeout: how long a call without a reconnector of its own retries.
    :param keys_of: the keys of a topic.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        url: BrokerURL,
        reconnect_timeout: float,
        keys_of: Callable[[str], ListKeys],
    ) -> None:
        self._client = client
        self._url = url
        self._reconnect_timeout = reconnect_timeout
        self._keys_of = keys_of

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
            return await operation()
        except (redis.RedisError, RedisClusterException) as exc:
            first = exc
        if not isinstance(first, TRANSIENT_ERRORS):
            await self._raise(first, topic)

        async def checked() -> _T:
            try:
                return await operation()
            except redis.ResponseError as exc:
                await self._raise(exc, topic)

        runner = reconnector or Reconnector(self._url, self._reconnect_timeout)
        # The reply of the first attempt may have been lost on the way.
        runner.reconnected = True
        return await runner.call(checked, topic=topic)

    async def _raise(self, exc: redis.RedisError | RedisClusterException, topic: str) -> NoReturn:
        if isinstance(exc, redis.ResponseError) and "WRONGTYPE" in str(exc):
            raise await self.wrong_type(topic) from exc
        with translate_errors(self._url, topic):
            raise exc
        raise AssertionError("translate_errors re-raises")  # pragma: no cover

    async def wrong_type(self, topic: str) -> IncompatibleTopic:
        """The error for a WRONGTYPE reply on ``topic``: names the first key found
        holding another type than redis+list needs, and both types."""
        keys = self._keys_of(topic)
        for key, expected in keys.expected_types().items():
            try:
                found = _text(await self._client.type(key))
            except redis.RedisError:
                break
            if found not in ("none", expected):
                return IncompatibleTopic(
                    f"the topic {topic!r} cannot be used as a redis+list queue: the Redis key "
                    f"{key!r} at {self._url} holds a {found}, not a {expected} (written by "
                    "another program, or by another brokerkit backend such as redis+stream); "
                    "use another topic or prefix, or delete that key"
                )
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


async def lease_moved(
    state: ConsumerState, consumer: str, count: int, lease_ms: int, fetch: AsyncLua
) -> tuple[list[str], tuple[list[Any], list[list[bytes]] | None]] | None:
    """Lease up to ``count`` elements by moves (see FETCH, *Moves*) when the
    consumer's last fetch was of elements of ``MOVE_BYTES`` or more: the fetch's nonces
    and :func:`lease_batch`'s reply; None when the fetch should lease by the script
    alone (smaller elements, a cluster, a server that refused the moves)."""
    size, reader = state.element_size, state.reader
    if size < MOVE_BYTES or not reader.pooled or state.moves_refused:
        return None
    nonces = new_nonces(1)
    moves = moves_for(count, size)
    keys = state.keys
    batch, moving = keys.batch(nonces[0], consumer), keys.moving(consumer)
    args = [*state.plan.common, consumer, count, lease_ms, nonces[0], size, "3", moves]
    commands = moves_transaction(fetch, [*state.fetch_keys, batch], args, moves, keys.queue, moving)
    leased = await _run_moves(reader, commands, fetch)
    if leased is None:  # refused before anything ran (an ACL without RENAME): never again
        state.moves_refused = True
        return None
    return nonces, leased


def moves_transaction(
    fetch: AsyncLua, keys: list[str], args: list[Any], moves: int, queue: str, moving: str
) -> list[tuple[Any, ...]]:
    """A fetch by moves (see FETCH, *Moves*): ``MULTI``, the ``fetch`` script with
    ``keys`` (the last one the batch the moves go to) and the ``moving`` key, and
    ``args``, then ``moves`` times ``LMOVE``, the ``RENAME`` back to ``queue``,
    ``EXEC``."""
    batch = keys[-1]
    return [
        ("MULTI",),
        ("EVALSHA", fetch.sha, len(keys) + 1, *keys, moving, *args),
        *[("LMOVE", moving, batch, "RIGHT", "RIGHT")] * moves,
        ("RENAME", moving, queue),
        ("EXEC",),
    ]


async def _run_moves(
    reader: AsyncReader, commands: list[tuple[Any, ...]], fetch: AsyncLua
) -> tuple[list[Any], list[list[bytes]] | None] | None:
    """The reply of the ``fetch`` script of the transaction ``commands`` (``MULTI``, the
    script, the ``LMOVE``s, the ``RENAME``, ``EXEC``), sent at once, and the elements it
    leased (None: leased, but not by the moves: read the batch); None when the server
    refused a command of the transaction before it ran any."""
    for _ in range(2):
        replies = await reader.execute_many(*commands, packed=reader.pack(*commands))
        replied = moves_reply(replies)
        if replied is None:
            return None
        reply, moved = replied
        if not isinstance(reply, NoScriptError):
            break
        # not loaded on this server yet (nothing ran): loaded, then the whole again
        await reader.execute("SCRIPT", "LOAD", fetch.script)
    if isinstance(reply, Exception):
        raise reply
    if reply[0] and not moved:  # one that came back, leased alone by the script
        return reply, None
    return reply, [moved]


def moves_reply(replies: list[Any]) -> tuple[Any, list[bytes]] | None:
    """From the replies to a transaction of moves (see FETCH, *Moves*): the FETCH
    script's reply (an error reply as its exception) and the elements the ``LMOVE``s
    moved; None, logged, when the server refused a command of it before it ran any (an
    ACL without ``RENAME``)."""
    done = replies[-1]
    if isinstance(done, ExecAbortError):
        refused = next((r for r in replies if isinstance(r, redis.ResponseError)), done)
        log.info("the server refused a fetch by moves (%s); leasing by the script", refused)
        return None
    if isinstance(done, Exception):
        return done, []
    # (the RENAME's reply, done[-1], is "no such key" when the script lent no queue)
    moved = [element for element in done[1:-1] if element is not None]
    for element in moved:
        if isinstance(element, Exception):
            return element, []
    return done[0], moved


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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
