"""Commands on a connection kept between them: a subscription's reads (redis+stream's
``XREADGROUP``, redis+list's fetch), the broker's settlements, one at a time, and its
single publishes, which many threads or tasks may send at once: the one that finds
the connection free sends on it, any other on a connection of the pool's.

redis-py's ``execute_command`` takes a connection from the pool and gives it back
around every command: its locks, its poll of the socket and its bookkeeping cost about
100k client instructions a command (measured with redis-py 8.1 and hiredis), as much
as a consumer spends on a third of a fetched batch of 100 messages. A subscription
fetches once at a time (its fetch lock), so it keeps one connection of the broker's
pool for its reads, taken on its first read and given back when it is closed; the
settlements go on the broker's settling connection (see
``StreamSettling._settle_scripts`` and ``ListSettling._run_held``), and one that finds
another on it on a connection of the pool's, sent and read here all the same.

The promise: the connection is never used by two commands at once (a command that
finds one under way, as after a cancelled receive whose fetch runs on, takes a
connection of the pool's for itself), and never given back to the pool with a reply
still to come. A command that fails for any reason but an error reply (a lost
connection, a timeout, a cancellation) disconnects it and gives it back: the caller's
retry takes a new one. A close while a command is under way leaves the connection to
that command, which gives it back when it ends. A command sent now whose replies are
read later (:meth:`AsyncReader.send`: redis+list's lease of an element it hands out
before the lease is written) is under way until they are read. A connection idle a
second or more is looked at first, as the pool looks at each one it hands out: one the
server closed meanwhile is opened again. A process made by ``fork`` never uses its
parent's connection. A cluster client has no one pool: its commands go through
``execute_command`` as before.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from brokerkit._acompat import CancelCount, checkpoint
from brokerkit.backends.redis._buffered import NOT_BUFFERED, BufferedReplies
from brokerkit.backends.redis._held_state import HeldState
from brokerkit.backends.redis._packing import pack

__all__ = ["AsyncHeldClient", "AsyncPerCommand", "AsyncReader", "AsyncSent", "unsent"]

#: Set on an error :meth:`AsyncReader.send` met opening a connection (see :func:`unsent`).
_UNSENT = "_brokerkit_unsent"


def unsent(exc: BaseException) -> bool:
    """Whether ``exc`` was raised by :meth:`AsyncReader.send` taking or opening the
    connection its commands were to go on: nothing of them was sent."""
    return getattr(exc, _UNSENT, False) is True


async def _taken(pool: Any) -> Any:
    """A connection of ``pool``'s, open (redis-py's pool opens the one it hands out),
    an error taking or opening it marked :func:`unsent`."""
    try:
        return await pool.get_connection()
    except Exception as exc:
        setattr(exc, _UNSENT, True)
        raise


async def _opened(connection: Any) -> None:
    """``connection`` open (as its send would open it), an error doing so marked
    :func:`unsent`."""
    try:
        await connection.connect()
    except Exception as exc:
        setattr(exc, _UNSENT, True)
        raise


class AsyncReader:
    """Commands on a connection held between them; a command that finds it busy goes
    on a connection of the pool's."""

    def __init__(self, client: Any) -> None:
        self._client = client
        #: None for a cluster client: every read goes through execute_command.
        self._pool: Any = getattr(client, "connection_pool", None)
        self._state = HeldState()

    @property
    def pooled(self) -> bool:
        """Whether commands run on a connection kept (not a cluster client's)."""
        return self._pool is not None

    async def execute(self, *args: Any) -> Any:
        """The server's reply to the command ``args``, as it came (no response
        callback); an error reply raises as :class:`redis.ResponseError`."""
        if self._pool is None:
            return await self._client.execute_command(*args)
        (reply,) = await self._exchange((args,))
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def execute_many(
        self, *commands: tuple[Any, ...], packed: list[bytes] | None = None
    ) -> list[Any]:
        """The server's replies to ``commands`` (``packed``: as :meth:`pack` packed
        them), sent at once, as they came (no response callback): an error reply is
        returned as its :class:`redis.ResponseError`, not raised, as a pipeline's
        ``execute(raise_on_error=False)`` returns it. Not for a cluster client."""
        if self._pool is None:
            raise TypeError("a cluster client's commands go through execute_command")
        return await self._exchange(commands, packed)

    async def _exchange(
        self, commands: tuple[tuple[Any, ...], ...], packed: list[bytes] | None = None
    ) -> list[Any]:
        sent = await self.send(*commands, packed=packed)
        return await sent.replies()

    def pack(self, *commands: tuple[Any, ...]) -> list[bytes] | None:
        """``commands`` in the bytes :meth:`send` sends for them, packed now for the kept
        connection (every connection of a pool packs alike: see :mod:`._packing`), or
        None when no connection is kept yet. A run of one command repeated (one tuple, as
        ``[command] * n`` repeats it) is packed once: redis-py packs each command apart,
        at about 3 us a command."""
        connection = self._state.connection
        if connection is None:
            return None
        packed: list[bytes] = []
        alone: list[tuple[Any, ...]] = []
        for _, run in itertools.groupby(commands, key=id):
            group = list(run)
            command, times = group[0], len(group)
            if times == 1:
                alone.append(command)
                continue
            if alone:
                packed += pack(connection, alone)
                alone = []
            packed.append(b"".join(pack(connection, (command,))) * times)
        return packed + pack(connection, alone) if alone else packed

    async def send(
        self, *commands: tuple[Any, ...], packed: list[bytes] | None = None
    ) -> AsyncSent:
        """Send ``commands`` at once (``packed``: as :meth:`pack` packed them) and return
        without reading their replies: the connection is theirs until
        :meth:`AsyncSent.replies` reads them (any other command meanwhile goes on a
        connection of the pool's, as when one is under way). Not for a cluster
        client."""
        if self._pool is None:
            raise TypeError("a cluster client's commands go through execute_command")
        pool, state, pid = self._pool, self._state, os.getpid()
        # A cancellation redis-py's connect or send loses is raised once the connection
        # is where the failure path gives it back (see keep_cancellation).
        cancellations = CancelCount()
        busy, connection, idle = state.begin(pid)
        if busy:
            # The kept connection has a command under way (a cancelled receive's fetch
            # runs on, waiting in BLMOVE): this one goes on a connection of its own.
            spare = await _taken(pool)
            try:
                await spare.send_packed_command(packed or pack(spare, commands))
                cancellations.raise_lost()
            except BaseException:
                await _let_go(pool, spare)
                raise
            return AsyncSent(self, spare, len(commands), kept=False)
        try:
            if connection is None:
                connection = await _taken(pool)
                state.keep(connection, pid)
            elif idle and await _closed_meanwhile(connection):
                await connection.disconnect()
            # opened apart from the send: an error opening it proves nothing was sent
            await _opened(connection)
            await connection.send_packed_command(packed or pack(connection, commands))
            cancellations.raise_lost()
        except BaseException:
            await self._ended(connection, failed=True)
            raise
        return AsyncSent(self, connection, len(commands), kept=True)

    async def _ended(self, connection: Any, *, failed: bool) -> None:
        """The command on the kept ``connection`` (None: none was taken) ended; a
        failed one may still have a reply on its way: that connection is done."""
        pool, state = self._pool, self._state
        try:
            if failed and connection is not None:
                state.drop(connection)
                await _let_go(pool, connection)
        finally:
            if state.end(connection):  # closed while the command was under way
                await pool.release(connection)

    async def close(self) -> None:
        """Give the connection back to the pool (at the end of a command under way)."""
        connection = self._state.close(os.getpid())
        if connection is not None:
            await self._pool.release(connection)


async def _let_go(pool: Any, connection: Any) -> None:
    """Disconnect ``connection``, whose command failed (a reply may still be on its
    way), and give it back to ``pool`` even when the disconnect fails too (a timeout
    closing the socket: the command's own failure is the one the caller raises; a
    second cancellation goes on)."""
    try:
        with contextlib.suppress(Exception):
            await connection.disconnect()
    finally:
        await pool.release(connection)


async def _closed_meanwhile(connection: Any) -> bool:
    """Whether an idle kept connection was closed by the server (an end of file, or
    anything else, waiting on its socket), as redis-py's pool asks of each connection
    it hands out."""
    # Under asyncio the loop learns of an end of file only when it polls the socket: two
    # turns of the loop (the first may run this task before the socket's callback). A
    # thread polls the socket itself.
    await checkpoint()
    await checkpoint()
    try:
        return bool(await connection.can_read())
    except (RedisConnectionError, RedisTimeoutError, OSError):
        return True


class AsyncSent:
    """Commands a reader sent whose replies are still to be read (see
    :meth:`AsyncReader.send`)."""

    __slots__ = ("_connection", "_count", "_kept", "_reader", "read")

    def __init__(self, reader: AsyncReader, connection: Any, count: int, *, kept: bool) -> None:
        self._reader = reader
        self._connection = connection
        self._count = count
        self._kept = kept
        #: The replies read so far, in order: after :meth:`replies` failed part-way
        #: (a lost connection, a timeout), those it read before (their commands ran).
        self.read: list[Any] = []

    async def replies(self) -> list[Any]:
        """The replies, as they came (no response callback), read once: an error reply
        is returned as its :class:`redis.ResponseError`, not raised. Then the
        connection is free again (or back in the pool)."""
        count, self._count = self._count, -1
        if count < 0:
            raise RuntimeError("these replies were read already")
        connection, reader = self._connection, self._reader
        replies = self.read
        buffered = None  # after a read_response, the replies that came with it
        try:
            for left in range(count - 1, -1, -1):
                reply = NOT_BUFFERED
                if buffered is not None:
                    try:
                        reply = buffered.take()
                    finally:  # as read_response hands them on: before what follows
                        if buffered.pushed:
                            await _hand_on_pushes(buffered)
                if reply is NOT_BUFFERED:
                    try:
                        reply = await connection.read_response()
                    except ResponseError as exc:  # read whole: the next follows
                        reply = exc
                    buffered = BufferedReplies(connection) if left else None
                replies.append(reply)
        except BaseException:
            if self._kept:
                await reader._ended(connection, failed=True)
            else:
                await _let_go(reader._pool, connection)
            raise
        if self._kept:
            await reader._ended(connection, failed=False)
        else:
            await reader._pool.release(connection)
        return replies


async def _hand_on_pushes(buffered: BufferedReplies) -> None:
    """Hand the push replies taken among the buffered ones to the parser's handler, as
    ``read_response`` does."""
    pushed, buffered.pushed = buffered.pushed, []
    for push in pushed:
        await buffered.push_handler(push)


class AsyncHeldClient:
    """The commands a script object sends (``EVALSHA``, ``SCRIPT LOAD``), on a
    reader's connection: given as the client of a script's call
    (:class:`~brokerkit.backends.redis._lua_async.AsyncLua`), it runs there."""

    def __init__(self, reader: AsyncReader) -> None:
        self.reader = reader

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        return await self.reader.execute("EVALSHA", sha, numkeys, *keys_and_args)

    async def script_load(self, script: str) -> Any:
        return await self.reader.execute("SCRIPT", "LOAD", script)


class AsyncPerCommand:
    """A client's ``execute_command`` alone: an :class:`AsyncReader` of it keeps no
    connection (as of a cluster client, each command takes one of the pool's). For a
    pool the URL caps (``max_connections``): a kept connection is one of the pool's,
    which every other command (a batch, inspect, purge) would then find taken (redis-py's
    pool at its cap fails a command at once)."""

    def __init__(self, client: Any) -> None:
        self.execute_command = client.execute_command
