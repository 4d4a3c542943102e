"""One subscriber connection of the pub/sub backend: SUBSCRIBE (or PSUBSCRIBE),
read with a deadline, notice a dead connection, reconnect with backoff and jitter,
and record every gap in listening.

The logic is written once, as the asyncio source ``listener_async.py`` on
``redis.asyncio``; ``listener.py`` is generated from it. Reading and writing the
connection's bytes go through a wire (:mod:`~brokerkit.backends.redis.pubsub.wire`):
straight from the socket (or the stream reader) through hiredis when it is
installed, else through redis-py. Connecting, and reconnecting after a loss, live
in ``resubscribing_async.py`` (and its generated twin).
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import TimeoutError as RedisTimeoutError

from brokerkit._acompat import Lock, acquire
from brokerkit._url import BrokerURL
from brokerkit.backends.redis._closing import CloseSignal, Halt
from brokerkit.backends.redis._connection import TRANSIENT_ERRORS, redis_url
from brokerkit.backends.redis.pubsub.gap import Gap
from brokerkit.backends.redis.pubsub.replies import is_confirmation
from brokerkit.backends.redis.pubsub.resubscribing_async import AsyncResubscribing
from brokerkit.backends.redis.pubsub.wire import NOTHING, AsyncHiredisWire, AsyncWire

__all__ = ["CLOSE_WAIT", "DEFAULT_SOCKET_TIMEOUT", "AsyncChannelListener"]

#: Seconds a connect, a handshake or a subscribe confirmation may take, unless
#: the URL sets ``socket_timeout`` / ``socket_connect_timeout``.
DEFAULT_SOCKET_TIMEOUT = 5.0
#: Seconds :meth:`AsyncChannelListener.close` waits for Redis to confirm the
#: unsubscribe (and for a reader elsewhere to let go) before it just drops the
#: connection, as it must when the server does not answer.
CLOSE_WAIT = 1.0

_CLIENT_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.:@=+-]")
_LOST: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, OSError)
#: PING, as the wire carries it.
_PING = b"*1\r\n$4\r\nPING\r\n"


class AsyncChannelListener(AsyncResubscribing):
    """A dedicated connection subscribed to one channel or one channel pattern.

    The connection carries the client name ``brokerkit-pubsub-<consumer>`` (visible
    in ``CLIENT LIST``), so an operator can tell subscribers apart. It reconnects on
    its own: when a read finds it broken (the server closed it, restarted, killed
    it for exceeding ``client-output-buffer-limit pubsub``, or stopped answering
    PINGs), later reads retry with exponential backoff and full jitter, and the
    first successful resubscription yields a :class:`Gap`.

    One reader at a time, as a subscription has; :meth:`close`
    may be called while a read is under way (from another thread, or task).

    :param url: the broker URL (its password never appears in an error).
    :param channel: the channel, or the glob over channels when ``pattern``.
    :param reconnect_timeout: seconds of failed reconnection after which a read
        raises :class:`~brokerkit.ConnectionFailed` (a later read tries again).
    :param ping_interval: seconds of silence after which the connection is
        PINGed; no answer within as long again means it is dead (0: never).
    :param closing: the broker's close, which ends the reconnecting (:meth:`open`'s
        retries, a read's) as it begins.
    """

    def __init__(
        self,
        url: BrokerURL,
        channel: bytes,
        *,
        pattern: bool,
        topic: str,
        consumer: str,
        reconnect_timeout: float,
        ping_interval: float,
        sharded: bool = False,
        locate: Callable[[], Awaitable[tuple[str, int]]] | None = None,
        closing: CloseSignal | None = None,
    ) -> None:
        self.url = url
        self._closing = closing
        self.channel = channel
        self.pattern = pattern
        self.topic = topic
        self.consumer = consumer
        self.reconnect_timeout = reconnect_timeout
        self.ping_interval = ping_interval
        #: Every gap so far, oldest first.
        self.gaps: list[Gap] = []
        #: Messages read so far: the broker numbers its deliveries with it.
        self.read_count = 0
        kind = "P" if pattern else "S" if sharded else ""
        self._command = f"{kind}SUBSCRIBE"
        self._confirmation = f"{kind}subscribe".lower().encode()
        self._unsubscribe = f"{kind}UNSUBSCRIBE"
        self._unsubscribed = f"{kind}unsubscribe".lower().encode()
        #: Where to connect, asked before every (re)connection: the node that serves
        #: a shard channel's slot, or the master the sentinels name (None: the URL's host).
        self._locate = locate
        # redis-py's own retry would reconnect behind our back and hide the gap;
        # this listener owns every reconnect, so the connection never retries. (Any:
        # redis-py's pools are partly untyped.)
        self._pool: Any = aioredis.ConnectionPool.from_url(
            redis_url(url),
            socket_timeout=DEFAULT_SOCKET_TIMEOUT,
            socket_connect_timeout=DEFAULT_SOCKET_TIMEOUT,
            retry=aioredis.retry.Retry(NoBackoff(), 0),
        )
        #: Set with CLIENT SETNAME after connecting (not by the pool, whose connect
        #: would fail where an ACL refuses it: the name is only for CLIENT LIST).
        self._client_name = _CLIENT_NAME_UNSAFE.sub("_", f"brokerkit-pubsub-{consumer}")
        self._name_refused = False
        self._conn: Any = None
        self._link: AsyncWire | None = None
        self._closed = False
        self._reading = Lock()
        # Serializes writes to the connection: the reader's PINGs and close()'s unsubscribe.
        self._sending = Lock()
        self._unsubscribe_sent = False
        # Set by wake(): the read under way returns what it has.
        self._woken = False
        self._last_heard = 0.0
        self._ping_sent: float | None = None
        # Set while the connection is lost: when, why, and the retry schedule.
        self._lost_at: float | None = None
        self._noticed_at = 0.0
        self._reason = ""
        self._attempt = 0
        self._next_try = 0.0
        self._give_up_at = 0.0
        # Ends the reconnecting for good: the broker's close began, or the
        # subscription closes (nudge()).
        self._halt = Halt()

    @property
    def connected(self) -> bool:
        """Whether the listener is subscribed right now (as far as it knows)."""
        return self._conn is not None

    @property
    def _wire(self) -> AsyncHiredisWire | None:
        """The hiredis fast path in use; None when reading through redis-py's parser."""
        link = self._link
        return link if isinstance(link, AsyncHiredisWire) else None

    async def read(
        self, max_messages: int, timeout: float
    ) -> tuple[list[tuple[bytes, bytes]], Gap | None]:
        """Up to ``max_messages`` ``(channel, data)`` pairs, waiting at most about
        ``timeout`` seconds for the first, and the gap that ended during this call.

        A gap is returned with an empty list, so that the caller hears of it before
        any message received after it. Messages read before a loss are returned
        first; the loss is handled on the next call.

        :raises ConnectionFailed: the connection has been lost for ``reconnect_timeout``
            seconds, or Redis refused the credentials.
        """
        async with self._reading:
            try:
                if self._closed:
                    return [], None
                return await self._read(max_messages, time.monotonic() + timeout)
            finally:
                if self._closed:
                    await self._finish_close(time.monotonic() + CLOSE_WAIT)

    async def _read(
        self, max_messages: int, deadline: float
    ) -> tuple[list[tuple[bytes, bytes]], Gap | None]:
        link = self._link
        if link is None:
            return [], await self._recover(deadline)
        received: list[tuple[bytes, bytes]] = []
        try:
            await self._read_link(link, received, max_messages, deadline)
        except _LOST as exc:
            await self._lose(exc)
            if not received and not self._closed:
                return [], await self._recover(deadline)
        return received, None

    async def _read_link(
        self,
        link: AsyncWire,
        received: list[tuple[bytes, bytes]],
        max_messages: int,
        deadline: float,
    ) -> None:
        """Read through ``link``: the replies already received first, then whatever
        has arrived, and wait only when nothing has (about until ``deadline``, PINGing
        a silent connection meanwhile).

        The socket is always read once without waiting before the deadline or the
        keep-alive is looked at: a poll (``deadline`` already passed) gets what has
        arrived, and the answer to a PING sent before the application went away is
        found before that PING can be judged unanswered.
        """
        while not self._closed:
            link.take(received, max_messages)
            if len(received) >= max_messages or self._woken:
                self._woken = False
                return
            if await link.fill(0):
                self._heard()
                continue
            if received:
                return
            now = time.monotonic()
            check_at = await self._keep_alive(now)
            if now >= deadline:
                return
            if await link.fill(min(deadline, check_at) - now):
                self._heard()

    def _heard(self) -> None:
        self._last_heard = time.monotonic()
        self._ping_sent = None

    async def wake(self) -> None:
        """Make the read under way (or else the next one) return at once with what
        it has: a PING is sent, whose answer ends the reader's wait.

        A subscription whose receive was cancelled calls this once it has taken
        back what that receive's read brought, so that its next receive gets those
        messages now rather than after its own read's timeout.
        """
        self._woken = True
        async with self._sending:
            link = self._link
            if link is not None and self._reading.locked() and link.may_send_under_reader:
                with contextlib.suppress(*_LOST):  # a lost connection wakes the reader too
                    await link.send(b"".join(self._conn.pack_command("PING")))

    def nudge(self) -> None:
        """Make the read under way return soon with what it has, from any thread: a
        PING is written, whose answer ends the reader's wait (its subscription is
        closing: the close need not wait out the read). Under asyncio the PING is
        handed to the connection's event loop and this returns at once; in threads it
        is written here, after another thread's write under way, as fast as the
        socket takes it (a server that stopped reading: up to the socket timeout, 5 s
        by default), and dropped if that fails. Over TLS in threads nothing may be
        written under the reader: its read ends at its deadline, about a second at
        most.

        A read that reconnects gives up (:class:`ConnectionFailed`, which the core
        raises as BrokerClosed): the wait between two attempts is woken, and the
        connection being made is cut (:class:`~.._closing.Halt`)."""
        self._halt.wake()
        self._woken = True  # a read about to begin returns at once too
        link = self._link
        if link is not None and self._reading.locked():
            link.nudge(_PING)

    async def close(self) -> None:
        """Stop listening, and return once Redis has confirmed the unsubscribe: a
        message published after this returns no longer counts this listener as a
        receiver. When Redis does not confirm within about ``CLOSE_WAIT`` seconds (a
        lost or frozen server), the connection is dropped without waiting.

        Safe to call while a read is in progress elsewhere: the unsubscribe is sent
        under the reader, whose read wakes on the reply, returns what it has, and
        closes the connection.
        """
        self._closed = True
        if self._closing is not None:
            self._closing.unwatch(self._halt)
        deadline = time.monotonic() + CLOSE_WAIT
        if await self._close_when_free(0, deadline):
            return
        # A reader owns the connection while it reads: closing it under the reader
        # would make redis-py silently reconnect it. The unsubscribe's reply wakes it
        # instead; it sees the flag and finishes the close (see read()). Over TLS in
        # threads nothing is sent under the reader, which wakes at the end of its
        # (short) read and unsubscribes.
        link = self._link
        if (
            not await self._send_unsubscribe(under_reader=True)
            and link is not None
            and link.may_send_under_reader
        ):
            link.interrupt()  # a broken connection: nothing to confirm, wake the reader now
        if await self._close_when_free(deadline - time.monotonic(), deadline):
            return
        link = self._link
        if link is not None:
            link.interrupt()  # no answer: wake the reader anyway

    async def _close_when_free(self, wait: float, deadline: float) -> bool:
        """Finish the close once no read is under way, waiting ``wait`` seconds at
        most for the reader to let go; whether it was done here."""
        if not await acquire(self._reading, wait):
            return False
        try:
            await self._finish_close(deadline)
        finally:
            self._reading.release()
        return True

    async def _send_unsubscribe(self, *, under_reader: bool = False) -> bool:
        """Send UNSUBSCRIBE (PUNSUBSCRIBE) once; whether it has been sent.

        With ``under_reader``, another thread may be reading the connection: then a
        wire that must not be written meanwhile (TLS in threads) is left alone.
        """
        async with self._sending:
            if self._unsubscribe_sent:
                return True
            conn, link = self._conn, self._link
            if link is None or (under_reader and not link.may_send_under_reader):
                return False
            try:
                await link.send(b"".join(conn.pack_command(self._unsubscribe, self.channel)))
            except _LOST:
                return False
            self._unsubscribe_sent = True
            return True

    async def _finish_close(self, deadline: float) -> None:
        """Unsubscribe, read until Redis confirms it (or ``deadline``), and disconnect.
        The caller holds ``_reading``."""
        link = self._link
        if link is not None and await self._send_unsubscribe():
            with contextlib.suppress(Exception):  # the connection is dropped either way
                await self._await_unsubscribed(link, deadline)
        await self._disconnect()

    async def _await_unsubscribed(self, link: AsyncWire, deadline: float) -> bool:
        while True:
            reply = link.reply()
            if reply is NOTHING:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                await link.fill(remaining)
                continue
            if isinstance(reply, Exception):
                return False
            if is_confirmation(reply, self._unsubscribed, self.channel):
                return True

    async def _disconnect(self) -> None:
        conn, self._conn, self._link = self._conn, None, None
        if conn is not None:
            await conn.disconnect()
        await self._pool.disconnect()

    async def _keep_alive(self, now: float) -> float:
        """PING a silent connection; declare it dead when a PING goes unanswered for
        ``ping_interval``. Returns when to look again.

        :raises redis.TimeoutError: the PING went unanswered.
        """
        interval = self.ping_interval
        if interval <= 0:
            return math.inf
        if self._ping_sent is not None:
            if now - self._ping_sent >= interval:
                raise RedisTimeoutError(
                    f"no answer to PING within {interval:g} s; the connection is dead"
                )
            return self._ping_sent + interval
        if now - self._last_heard >= interval:
            async with self._sending:
                if self._link is not None:
                    await self._link.send(b"".join(self._conn.pack_command("PING")))
            self._ping_sent = now
            return now + interval
        return self._last_heard + interval
