"""One subscriber connection of the pub/sub backend: SUBSCRIBE (or PSUBSCRIBE),
read with a deadline (straight from the socket through hiredis when it is
installed), notice a dead connection, reconnect with backoff and jitter, and
record every gap in listening."""

from __future__ import annotations

import contextlib
import math
import random
import re
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from brokerkit._url import BrokerURL
from brokerkit.backends.redis._connection import TRANSIENT_ERRORS, redis_url, translate_errors
from brokerkit.exceptions import ConnectionFailed

__all__ = ["ChannelListener", "Gap"]

#: Seconds a connect, a handshake or a subscribe confirmation may take, unless
#: the URL sets ``socket_timeout`` / ``socket_connect_timeout``.
DEFAULT_SOCKET_TIMEOUT = 5.0
#: Seconds :meth:`ChannelListener.close` waits for Redis to confirm the
#: unsubscribe (and for a reader in another thread to let go) before it just drops
#: the connection, as it must when the server does not answer.
CLOSE_WAIT = 1.0

_BACKOFF_BASE = 0.05
_BACKOFF_CAP = 2.0
_CLIENT_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.:@=+-]")
_LOST: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, OSError)
#: What a non-blocking ``recv`` raises when nothing has arrived (TLS sockets may
#: also need to write before they can read).
_NOTHING_YET = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
_READ_SIZE = 65536

try:  # redis-py's hiredis parser, whose reader a _Wire reads directly
    from redis._parsers import hiredis as _hiredis_parser
except ImportError:  # pragma: no cover - another redis-py layout: read through redis-py
    _hiredis_parser = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Gap:
    """A stretch of time when a subscription was not listening.

    Redis Pub/Sub keeps nothing: every message published to the subscription's
    channels from (shortly before) :attr:`lost_at` until :attr:`resumed_at` is
    lost for this subscriber. An application that must not miss messages resyncs
    from its source of truth when it learns of a gap, or uses ``redis+stream``.

    :ivar topic: the subscription's topic, or its pattern when :attr:`pattern` is true.
    :ivar pattern: whether :attr:`topic` is a glob pattern.
    :ivar consumer: the subscription's consumer name.
    :ivar number: 1 for the subscription's first gap, 2 for its second, ...
    :ivar lost_at: when the loss was noticed (``time.time()``); Redis may have
        dropped the connection a little earlier.
    :ivar resumed_at: when the subscription was confirmed again (``time.time()``).
    :ivar reason: what ended the connection, as the driver reported it.
    """

    topic: str
    pattern: bool
    consumer: str
    number: int
    lost_at: float
    resumed_at: float
    reason: str

    @property
    def duration(self) -> float:
        """Seconds between :attr:`lost_at` and :attr:`resumed_at`."""
        return self.resumed_at - self.lost_at


class ChannelListener:
    """A dedicated connection subscribed to one channel or one channel pattern.

    The connection carries the client name ``client_name`` (visible in
    ``CLIENT LIST``), so an operator can tell subscribers apart. It reconnects on
    its own: when a read finds it broken (the server closed it, restarted, killed
    it for exceeding ``client-output-buffer-limit pubsub``, or stopped answering
    PINGs), later reads retry with exponential backoff and full jitter, and the
    first successful resubscription yields a :class:`Gap`.

    Not thread-safe: one reader at a time, as a :class:`~brokerkit.Subscription`.

    :param url: the broker URL (its password never appears in an error).
    :param channel: the channel, or the glob over channels when ``pattern``.
    :param reconnect_timeout: seconds of failed reconnection after which a read
        raises :class:`~brokerkit.ConnectionFailed` (a later read tries again).
    :param ping_interval: seconds of silence after which the connection is
        PINGed; no answer within as long again means it is dead (0: never).
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
    ) -> None:
        self.url = url
        self.channel = channel
        self.pattern = pattern
        self.topic = topic
        self.consumer = consumer
        self.reconnect_timeout = reconnect_timeout
        self.ping_interval = ping_interval
        #: Every gap so far, oldest first.
        self.gaps: list[Gap] = []
        self._command = "PSUBSCRIBE" if pattern else "SUBSCRIBE"
        self._confirmation = b"psubscribe" if pattern else b"subscribe"
        self._unsubscribe = "PUNSUBSCRIBE" if pattern else "UNSUBSCRIBE"
        self._unsubscribed = b"punsubscribe" if pattern else b"unsubscribe"
        # redis-py's own retry would reconnect behind our back and hide the gap;
        # this listener owns every reconnect, so the connection never retries.
        self._pool: redis.ConnectionPool = redis.ConnectionPool.from_url(
            redis_url(url),
            client_name=_CLIENT_NAME_UNSAFE.sub("_", f"brokerkit-pubsub-{consumer}"),
            socket_timeout=DEFAULT_SOCKET_TIMEOUT,
            socket_connect_timeout=DEFAULT_SOCKET_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        self._conn: Any = None
        self._wire: _Wire | None = None
        self._closed = False
        self._reading = threading.Lock()
        # Serializes writes to the socket: the reader's PINGs and close()'s unsubscribe.
        self._sending = threading.Lock()
        self._unsubscribe_sent = False
        self._last_heard = 0.0
        self._ping_sent: float | None = None
        # Set while the connection is lost: when, why, and the retry schedule.
        self._lost_at: float | None = None
        self._reason = ""
        self._attempt = 0
        self._next_try = 0.0
        self._give_up_at = 0.0

    @property
    def connected(self) -> bool:
        """Whether the listener is subscribed right now (as far as it knows)."""
        return self._conn is not None

    def open(self) -> None:
        """Subscribe, and return once Redis has confirmed it: a message published
        after this returns reaches the listener.

        :raises ConnectionFailed: Redis could not be reached within ``reconnect_timeout``.
        """
        give_up_at = time.monotonic() + self.reconnect_timeout
        attempt = 0
        while True:
            try:
                self._connect()
                return
            except ConnectionFailed as exc:
                attempt += 1
                delay = _backoff(attempt)
                if _is_refusal(exc) or time.monotonic() + delay > give_up_at:
                    raise
                time.sleep(delay)

    def read(
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
        with self._reading:
            try:
                if self._closed:
                    return [], None
                return self._read(max_messages, time.monotonic() + timeout)
            finally:
                if self._closed:
                    self._finish_close(time.monotonic() + CLOSE_WAIT)

    def _read(
        self, max_messages: int, deadline: float
    ) -> tuple[list[tuple[bytes, bytes]], Gap | None]:
        if self._conn is None:
            return [], self._recover(deadline)
        received: list[tuple[bytes, bytes]] = []
        try:
            if self._wire is not None:
                self._read_wire(self._wire, received, max_messages, deadline)
            else:
                self._read_driver(received, max_messages, deadline)
        except _LOST as exc:
            self._lose(exc)
            if not received and not self._closed:
                return [], self._recover(deadline)
        return received, None

    def close(self) -> None:
        """Stop listening, and return once Redis has confirmed the unsubscribe: a
        message published after this returns no longer counts this listener as a
        receiver. When Redis does not confirm within about ``CLOSE_WAIT`` seconds (a
        lost or frozen server), the connection is dropped without waiting.

        Safe to call from another thread while a read is in progress: the
        unsubscribe is sent under the reader, whose read wakes on the reply, returns
        what it has, and closes the connection.
        """
        self._closed = True
        deadline = time.monotonic() + CLOSE_WAIT
        if self._reading.acquire(blocking=False):
            try:
                self._finish_close(deadline)
            finally:
                self._reading.release()
            return
        # A reader owns the socket while it reads: closing it under the reader would
        # make redis-py silently reconnect it. The unsubscribe's reply wakes it instead;
        # it sees the flag and finishes the close (see read()). Over TLS nothing is sent
        # under the reader, which wakes at the end of its (short) read and unsubscribes.
        sock = getattr(self._conn, "_sock", None)
        if not self._send_unsubscribe(under_reader=True) and not isinstance(sock, ssl.SSLSocket):
            _shut(sock)  # a broken socket: nothing to confirm, wake the reader now
        if self._reading.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            try:
                self._finish_close(deadline)
            finally:
                self._reading.release()
            return
        _shut(getattr(self._conn, "_sock", None))  # no answer: wake the reader anyway

    def _send_unsubscribe(self, *, under_reader: bool = False) -> bool:
        """Send UNSUBSCRIBE (PUNSUBSCRIBE) once; whether it has been sent.

        With ``under_reader``, another thread may be reading the socket: then a TLS
        socket is left alone (one TLS session must not be used from two threads).
        """
        with self._sending:
            if self._unsubscribe_sent:
                return True
            conn = self._conn
            sock = getattr(conn, "_sock", None)
            if sock is None or (under_reader and isinstance(sock, ssl.SSLSocket)):
                return False
            try:
                sock.sendall(b"".join(conn.pack_command(self._unsubscribe, self.channel)))
            except OSError:
                return False
            self._unsubscribe_sent = True
            return True

    def _finish_close(self, deadline: float) -> None:
        """Unsubscribe, read until Redis confirms it (or ``deadline``), and disconnect.
        The caller holds ``_reading``."""
        conn, wire = self._conn, self._wire
        if conn is not None and self._send_unsubscribe():
            with contextlib.suppress(Exception):  # the connection is dropped either way
                if wire is not None:
                    self._await_unsubscribed_wire(wire, deadline)
                else:
                    self._await_unsubscribed_driver(conn, deadline)
        self._disconnect()

    def _await_unsubscribed_wire(self, wire: _Wire, deadline: float) -> bool:
        gets, nothing = wire.reader.gets, wire.not_enough_data
        while True:
            reply = gets()
            if reply is nothing:
                now = time.monotonic()
                if now >= deadline:
                    return False
                if not wire.fill():
                    wire.wait(deadline - now)
                continue
            if isinstance(reply, Exception):
                return False
            if _is_confirmation(reply, self._unsubscribed, self.channel):
                return True

    def _await_unsubscribed_driver(self, conn: Any, deadline: float) -> bool:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not conn.can_read(timeout=remaining):
                return False
            reply = conn.read_response(push_request=True)
            if _is_confirmation(reply, self._unsubscribed, self.channel):
                return True

    def _disconnect(self) -> None:
        conn, self._conn, self._wire = self._conn, None, None
        if conn is not None:
            conn.disconnect()
        self._pool.disconnect()

    # -- reading --------------------------------------------------------------------

    def _read_wire(
        self, wire: _Wire, received: list[tuple[bytes, bytes]], max_messages: int, deadline: float
    ) -> None:
        """Read through ``wire``: the replies already buffered first, then whatever
        one ``recv`` brings, and wait (``poll``) only when nothing has arrived."""
        while not self._closed:
            wire.parse(received, max_messages)
            if len(received) >= max_messages:
                return
            if wire.fill():
                self._last_heard = time.monotonic()
                self._ping_sent = None
                continue
            if received:
                return
            now = time.monotonic()
            check_at = self._keep_alive(now)
            if now >= deadline:
                return
            wire.wait(min(deadline, check_at) - now)

    def _read_driver(
        self, received: list[tuple[bytes, bytes]], max_messages: int, deadline: float
    ) -> None:
        """Read through redis-py's connection (a parser other than hiredis)."""
        conn = self._conn
        while len(received) < max_messages and not self._closed:
            # can_read(0) answers from the parser's buffer first, without a system call.
            if not conn.can_read(timeout=0):
                if received:
                    return
                now = time.monotonic()
                check_at = self._keep_alive(now)
                if now >= deadline:
                    return
                conn.can_read(timeout=min(deadline, check_at) - now)
                continue
            response = conn.read_response(push_request=True)
            self._last_heard = time.monotonic()
            self._ping_sent = None
            message = _message(response)
            if message is not None:
                received.append(message)

    def _keep_alive(self, now: float) -> float:
        """PING a silent connection; declare it dead when a PING goes unanswered for
        ``ping_interval``. Returns when to look again.

        :raises redis.TimeoutError: the PING went unanswered.
        """
        interval = self.ping_interval
        if interval <= 0:
            return math.inf
        if self._ping_sent is not None:
            if now - self._ping_sent >= interval:
                raise redis.TimeoutError(
                    f"no answer to PING within {interval:g} s; the connection is dead"
                )
            return self._ping_sent + interval
        if now - self._last_heard >= interval:
            with self._sending:
                self._conn.send_command("PING", check_health=False)
            self._ping_sent = now
            return now + interval
        return self._last_heard + interval

    # -- losing and regaining the connection -----------------------------------------

    def _connect(self) -> None:
        """Connect and subscribe, waiting for the confirmation (errors translated)."""
        conn: Any = self._pool.make_connection()
        try:
            with translate_errors(self.url, self.topic):
                conn.connect()
                conn.send_command(self._command, self.channel, check_health=False)
                while True:
                    response = conn.read_response(push_request=True)
                    if _is_confirmation(response, self._confirmation, self.channel):
                        break
            wire = _Wire.of(conn)
        except BaseException:
            conn.disconnect()
            raise
        with self._sending:
            self._conn, self._wire = conn, wire
            self._unsubscribe_sent = False
        self._last_heard = time.monotonic()
        self._ping_sent = None

    def _lose(self, exc: BaseException) -> None:
        conn, self._conn, self._wire = self._conn, None, None
        if conn is not None:
            conn.disconnect()
        self._lost_at = time.time()
        self._reason = str(exc) or type(exc).__name__
        self._attempt = 0
        self._next_try = time.monotonic()
        self._give_up_at = time.monotonic() + self.reconnect_timeout

    def _recover(self, deadline: float) -> Gap | None:
        """Try to resubscribe until ``deadline``; the gap if it worked."""
        while not self._closed:
            now = time.monotonic()
            if now < self._next_try:
                if self._next_try > deadline:
                    time.sleep(max(deadline - now, 0.0))
                    return None
                time.sleep(self._next_try - now)
            try:
                self._connect()
            except ConnectionFailed as exc:
                self._attempt += 1
                self._next_try = time.monotonic() + _backoff(self._attempt)
                if _is_refusal(exc) or time.monotonic() >= self._give_up_at:
                    # The application hears of it; its next read starts a new window.
                    self._give_up_at = time.monotonic() + self.reconnect_timeout
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
            )
            self.gaps.append(gap)
            self._lost_at = None
            return gap
        return None


class _Wire:
    """Direct reads of a subscribed connection: its socket, made non-blocking, and
    redis-py's hiredis reader, which keeps every byte redis-py had already read.

    A burst of messages then costs one ``recv`` per 64 KiB and no system call per
    message; redis-py's own read path polls the socket before every reply.
    """

    def __init__(self, sock: socket.socket, reader: Any, not_enough_data: object) -> None:
        self.sock = sock
        self.reader = reader
        self.not_enough_data = not_enough_data
        self.buffer = bytearray(_READ_SIZE)
        self.poller = select.poll()
        self.poller.register(sock, select.POLLIN)
        sock.setblocking(False)

    @classmethod
    def of(cls, conn: Any) -> _Wire | None:
        """The wire of ``conn``; None when its parser is not redis-py's hiredis parser
        (or the platform has no ``poll``): then the listener reads through redis-py."""
        parser_class = getattr(_hiredis_parser, "_HiredisParser", None)
        not_enough_data = getattr(_hiredis_parser, "NOT_ENOUGH_DATA", None)
        parser, sock = getattr(conn, "_parser", None), getattr(conn, "_sock", None)
        reader = getattr(parser, "_reader", None)
        if (
            parser_class is None
            or not_enough_data is None
            or not isinstance(parser, parser_class)
            or reader is None
            or not isinstance(sock, socket.socket)
            or not hasattr(select, "poll")
        ):
            return None
        try:
            return cls(sock, reader, not_enough_data)
        except OSError:
            return None

    def parse(self, received: list[tuple[bytes, bytes]], max_messages: int) -> None:
        """Move complete replies from the reader's buffer into ``received`` (as
        ``(channel, data)``) until it holds ``max_messages``; no system call.

        :raises redis.ConnectionError: the reader reported a broken connection.
        """
        gets, nothing = self.reader.gets, self.not_enough_data
        while len(received) < max_messages:
            reply = gets()
            if reply is nothing:
                return
            if isinstance(reply, list):  # hiredis's PushNotification (RESP3) is a list
                if len(reply) == 3 and reply[0] == b"message":
                    received.append((reply[1], reply[2]))
                    continue
                message = _message(reply)
                if message is not None:
                    received.append(message)
                elif reply and isinstance(reply[0], Exception):
                    raise reply[0]
            elif isinstance(reply, Exception):
                raise reply

    def fill(self) -> bool:
        """Feed the reader what one non-blocking ``recv`` returns; False if nothing
        has arrived.

        :raises redis.ConnectionError: the server closed the connection.
        :raises OSError: the connection broke.
        """
        try:
            size = self.sock.recv_into(self.buffer)
        except _NOTHING_YET:
            return False
        if size == 0:
            raise redis.ConnectionError("the server closed the connection")
        self.reader.feed(self.buffer, 0, size)
        return True

    def wait(self, seconds: float) -> None:
        """Return when the socket is readable (or closed), or after ``seconds``."""
        self.poller.poll(max(seconds, 0.0) * 1000)


def _backoff(attempt: int) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt))


def _shut(sock: socket.socket | None) -> None:
    """End ``sock`` both ways, which wakes a thread polling or reading it."""
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _is_refusal(exc: ConnectionFailed) -> bool:
    return isinstance(exc.__cause__, redis.AuthenticationError)


def _is_confirmation(response: Any, kind: bytes, channel: bytes) -> bool:
    return (
        isinstance(response, list)
        and len(response) >= 2
        and isinstance(response[0], bytes)
        and response[0].lower() == kind
        and response[1] == channel
    )


def _message(response: Any) -> tuple[bytes, bytes] | None:
    """``(channel, data)`` of a published message; None for PING replies and
    subscription confirmations."""
    if not isinstance(response, list) or not response or not isinstance(response[0], bytes):
        return None
    kind = response[0].lower()
    if kind == b"message" and len(response) == 3:
        return response[1], response[2]
    if kind == b"pmessage" and len(response) == 4:
        return response[2], response[3]
    return None
