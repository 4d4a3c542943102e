"""How a pub/sub listener (``AsyncChannelListener``) makes its
connection, notices that it lost it, and makes it again: connect, name, subscribe and wait
for the confirmation; retry with exponential backoff and full jitter for
``reconnect_timeout``; record the gap; stop retrying once halted (the subscription or the
broker closes).

The logic is written once, as the asyncio source ``resubscribing_async.py`` on
``redis.asyncio``; ``resubscribing.py`` is generated from it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from brokerkit._acompat import Lock, Waiter
from brokerkit._logging import log_fields
from brokerkit._url import BrokerURL
from brokerkit.backends.redis._closing import CloseSignal, Halt
from brokerkit.backends.redis._connection import (
    backoff_delay,
    never_answered,
    note_reached,
    note_url_reached,
    translate_errors,
    unpooled_connection,
)
from brokerkit.backends.redis.pubsub.gap import Gap
from brokerkit.backends.redis.pubsub.replies import is_confirmation
from brokerkit.backends.redis.pubsub.wire import AsyncWire
from brokerkit.exceptions import ConnectionFailed

__all__ = ["AsyncResubscribing"]

_BACKOFF_BASE = 0.05
_BACKOFF_CAP = 2.0
log = logging.getLogger("brokerkit.redis")


class AsyncResubscribing:
    """The connecting half of ``AsyncChannelListener``, which sets every attribute
    declared here in its ``__init__``."""

    url: BrokerURL
    channel: bytes
    pattern: bool
    topic: str
    consumer: str
    reconnect_timeout: float
    gaps: list[Gap]
    _closing: CloseSignal | None
    _locate: Callable[[], Awaitable[tuple[str, int]]] | None
    _pool: Any
    _command: str
    _confirmation: bytes
    _client_name: str
    _name_refused: bool
    _conn: Any
    _link: AsyncWire | None
    _closed: bool
    _sending: Lock
    _unsubscribe_sent: bool
    _last_heard: float
    _ping_sent: float | None
    _lost_at: float | None
    _noticed_at: float
    _reason: str
    _attempt: int
    _next_try: float
    _give_up_at: float
    _halt: Halt

    async def open(self) -> None:
        """Subscribe, and return once Redis has confirmed it: a message published
        after this returns reaches the listener.

        :raises ConnectionFailed: Redis could not be reached within ``reconnect_timeout``,
            refused the credentials, or was never reached by this process (then at
            once: there is no restart to ride out); or the broker's close began
            (``closing``) while it could not be reached (then at once too).
        """
        if self._closing is not None and self._closing.watch(self._halt):
            self._halt.wake()
        give_up_at = time.monotonic() + self.reconnect_timeout
        attempt = 0
        while True:
            try:
                await self._connect()
                return
            except ConnectionFailed as exc:
                attempt += 1
                delay = _backoff(attempt)
                if (
                    _is_refusal(exc)
                    or never_answered(self.url, exc)
                    or time.monotonic() + delay > give_up_at
                ):
                    raise
                if not await self._pause(delay):
                    raise ConnectionFailed(
                        f"gave up subscribing to {self.topic!r} at {self.url}: the broker is "
                        f"closing ({exc})"
                    ) from exc

    async def _connect(self) -> None:
        """Connect and subscribe, waiting for the confirmation (errors translated)."""
        conn: Any = None
        try:
            with translate_errors(self.url, self.topic):
                conn = unpooled_connection(self._pool)
                conn.redis_connect_func = self._handshake
                self._halt.connecting = conn
                if self._locate is not None:
                    conn.host, conn.port = await self._locate()
                await conn.connect()
                note_reached(getattr(conn, "host", "localhost"), getattr(conn, "port", 6379))
                note_url_reached(self.url)
                await self._name(conn)
                await conn.send_command(self._command, self.channel, check_health=False)
                while True:
                    response = await conn.read_response(push_request=True)
                    if is_confirmation(response, self._confirmation, self.channel):
                        break
            link = AsyncWire.of(conn)
        except BaseException:
            if conn is not None:
                await conn.disconnect()
            raise
        finally:
            self._halt.connecting = None
        async with self._sending:
            self._conn, self._link = conn, link
            self._unsubscribe_sent = False
        self._last_heard = time.monotonic()
        self._ping_sent = None

    async def _handshake(self, conn: Any) -> None:
        """redis-py's handshake of a new connection (credentials, database), but none
        once the reconnecting is halted (the halt came before the socket was there to
        cut)."""
        if self._halt.halted:
            raise RedisConnectionError("the subscription, or its broker, is closing")
        await conn.on_connect()

    async def _pause(self, seconds: float) -> bool:
        """Wait ``seconds`` between two attempts, unless halted; whether to go on."""
        waiter = Waiter()
        self._halt.pausing = waiter
        try:
            if not self._halt.halted:
                await waiter.wait(seconds)
        finally:
            self._halt.pausing = None
        return not self._halt.halted

    async def _name(self, conn: Any) -> None:
        """Name the connection, so that an operator can tell subscribers apart in
        ``CLIENT LIST``; a refusal (an ACL without ``+client|setname``) costs only the
        name, and is logged once."""
        if self._name_refused:
            return
        await conn.send_command("CLIENT", "SETNAME", self._client_name, check_health=False)
        try:
            await conn.read_response()
        except ResponseError as exc:
            self._name_refused = True
            log.info(
                "subscribing to %r without a connection name: %s",
                self.topic,
                exc,
                extra=log_fields(self.topic),
            )

    async def _lose(self, exc: BaseException) -> None:
        conn, self._conn, self._link = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken; only release it
                await conn.disconnect()
        # The connection broke after it was last heard from: from then on, what was
        # published may be lost.
        self._noticed_at = time.time()
        self._lost_at = self._noticed_at - max(time.monotonic() - self._last_heard, 0.0)
        self._reason = str(exc) or type(exc).__name__
        self._attempt = 0
        self._next_try = time.monotonic()
        self._give_up_at = time.monotonic() + self.reconnect_timeout

    async def _recover(self, deadline: float) -> Gap | None:
        """Try to resubscribe until ``deadline``; the gap if it worked.

        :raises ConnectionFailed: ``reconnect_timeout`` passed, or the reconnecting was
            halted (the subscription or the broker closes).
        """
        while not self._closed:
            now = time.monotonic()
            if now < self._next_try:
                go_on = await self._pause(max(min(self._next_try, deadline) - now, 0.0))
                if go_on and time.monotonic() < self._next_try:
                    return None  # (the deadline came first)
            try:
                if self._halt.halted:
                    raise ConnectionFailed("it is closing")
                await self._connect()
            except ConnectionFailed as exc:
                if self._halt.halted:
                    raise ConnectionFailed(
                        f"gave up resubscribing to {self.topic!r} at {self.url}: the "
                        f"subscription, or its broker, is closing ({self._reason})"
                    ) from exc
                self._attempt += 1
                self._next_try = time.monotonic() + _backoff(self._attempt)
                if _is_refusal(exc) or time.monotonic() >= self._give_up_at:
                    # The application hears of it; its next read starts a new window,
                    # with the backoff started over.
                    self._give_up_at = time.monotonic() + self.reconnect_timeout
                    self._attempt = 0
                    raise ConnectionFailed(
                        f"the subscription to {self.topic!r} lost its connection to Redis at "
                        f"{self.url} ({self._reason}) and could not resubscribe within "
                        f"{self.reconnect_timeout:g} s: {exc}; messages published meanwhile "
                        "are lost"
                    ) from exc
                if time.monotonic() >= deadline:
                    return None
                continue
            gap = Gap(
                topic=self.topic,
                pattern=self.pattern,
                consumer=self.consumer,
                number=len(self.gaps) + 1,
                lost_at=self._lost_at if self._lost_at is not None else time.time(),
                resumed_at=time.time(),
                reason=self._reason,
                noticed_at=self._noticed_at,
            )
            self.gaps.append(gap)
            self._lost_at = None
            return gap
        return None


def _backoff(attempt: int) -> float:
    """Exponential backoff with full jitter."""
    return backoff_delay(attempt, _BACKOFF_BASE, _BACKOFF_CAP)


def _is_refusal(exc: ConnectionFailed) -> bool:
    return isinstance(exc.__cause__, AuthenticationError)
