"""The wire under a pub/sub listener: how a subscribed connection's bytes are read
and written. The one place where the sync and the asyncio listener differ.

:class:`~.listener.ChannelListener` (generated) and its asyncio source
:class:`~.listener_async.AsyncChannelListener` hold the logic once (subscribe and
confirm, reconnect with backoff and jitter, gaps, PING keep-alive, confirmed close);
they reach the connection only through one of these classes, which share one
interface (a method marked *async* is a coroutine on the asyncio side):

- ``of(conn)``: the fastest wire for a connected redis-py connection.
- ``take(received, max_messages)``: move the messages already received into
  ``received``; no I/O.
- ``reply()``: the next complete reply already received, or :data:`NOTHING`; no I/O.
- *async* ``fill(timeout)``: wait up to ``timeout`` seconds (0: not at all) for more
  of the server's bytes and take them in; whether any came.
- *async* ``send(data)``: write a packed command.
- ``nudge(data)``: write a packed command from any thread, to end a reader's wait; a
  failed write drops it. The sync wires write it in the calling thread, after another
  thread's write under way, as fast as the socket takes it (a full send buffer: up to
  the socket timeout), and not at all over TLS; the asyncio wires hand it to the
  connection's event loop and return at once.
- ``interrupt()``: end the connection at once, which wakes a reader.
- ``may_send_under_reader``: whether ``send`` may be used while another thread reads.

Sync: :class:`Wire` reads through redis-py's connection (any parser);
:class:`HiredisWire` reads the socket itself, non-blocking, into redis-py's hiredis
reader, so that a burst costs one ``recv`` per 64 KiB and no system call per
message. Asyncio: :class:`AsyncWire` reads through ``redis.asyncio``'s
``read_response(timeout=...)``; :class:`AsyncHiredisWire` takes what the
connection's stream reader holds into its hiredis reader, waiting only when nothing
has arrived (no task, no system call, per message).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import select
import socket
import ssl
import threading
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from brokerkit._acompat import within
from brokerkit.backends.redis.pubsub.replies import take_messages

__all__ = ["NOTHING", "AsyncHiredisWire", "AsyncWire", "HiredisWire", "Wire"]

#: What ``reply()`` returns when no complete reply has been received.
NOTHING: Any = object()

_READ_SIZE = 65536
#: What a non-blocking ``recv`` raises when nothing has arrived (TLS sockets may
#: also need to write before they can read).
_NOTHING_YET = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)

try:  # redis-py's hiredis parsers, whose readers the hiredis wires read directly
    from redis._parsers import hiredis as _hiredis_parser
except ImportError:  # pragma: no cover - another redis-py layout: read through redis-py
    _hiredis_parser = None  # type: ignore[assignment]


def _hiredis_reader(conn: Any, parser_class_name: str) -> tuple[Any, object] | None:
    """The hiredis reader of ``conn``'s parser and its "not enough data" marker, when
    the parser is redis-py's ``parser_class_name``."""
    parser_class = getattr(_hiredis_parser, parser_class_name, None)
    nothing = getattr(_hiredis_parser, "NOT_ENOUGH_DATA", None)
    parser = getattr(conn, "_parser", None)
    reader = getattr(parser, "_reader", None)
    if parser_class is None or nothing is None or not isinstance(parser, parser_class):
        return None
    return (reader, nothing) if reader is not None else None


# -- sync -----------------------------------------------------------------------------


class Wire:
    """A subscribed connection read through redis-py (``can_read`` and
    ``read_response``): works with any parser, one system call per reply."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._replies: collections.deque[Any] = collections.deque()
        #: One TLS session must not be used from two threads at once.
        self.may_send_under_reader = not isinstance(conn._sock, ssl.SSLSocket)
        #: Keeps the commands of two threads from interleaving on the socket.
        self._writing = threading.Lock()

    @classmethod
    def of(cls, conn: Any) -> Wire:
        """The hiredis wire of ``conn`` when its parser is redis-py's hiredis parser
        (and the platform has ``poll``), else a wire through redis-py."""
        return HiredisWire.make(conn) or Wire(conn)

    def take(self, received: list[tuple[bytes, bytes]], max_messages: int) -> None:
        take_messages(self.reply, NOTHING, received, max_messages)

    def reply(self) -> Any:
        return self._replies.popleft() if self._replies else NOTHING

    def fill(self, timeout: float) -> bool:
        conn = self.conn
        # can_read answers from the parser's buffer first, without a system call.
        if not conn.can_read(timeout=max(timeout, 0.0)):
            return False
        self._replies.append(conn.read_response(push_request=True))
        return True

    def send(self, data: bytes) -> None:
        sock = self.conn._sock
        if sock is None:
            raise RedisConnectionError("the connection is closed")
        with self._writing:
            sock.sendall(data)

    def nudge(self, data: bytes) -> None:
        sock = self.conn._sock
        if sock is None or not self.may_send_under_reader:
            return
        with self._writing, contextlib.suppress(OSError):  # broken: the reader wakes anyway
            sock.sendall(data)

    def interrupt(self) -> None:
        sock = self.conn._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class HiredisWire(Wire):
    """Direct reads of a subscribed connection: its socket, made non-blocking, and
    redis-py's hiredis reader, which keeps every byte redis-py had already read."""

    def __init__(self, conn: Any, reader: Any, nothing: object) -> None:
        super().__init__(conn)
        self.sock: socket.socket = conn._sock
        self.reader = reader
        self.nothing = nothing
        self.buffer = bytearray(_READ_SIZE)
        self.poller = select.poll()
        self.poller.register(self.sock, select.POLLIN)
        self.sock.setblocking(False)

    @classmethod
    def make(cls, conn: Any) -> HiredisWire | None:
        found = _hiredis_reader(conn, "_HiredisParser")
        if found is None or not isinstance(conn._sock, socket.socket):
            return None
        if not hasattr(select, "poll"):  # pragma: no cover - not on Linux/macOS
            return None
        try:
            return cls(conn, *found)
        except OSError:
            return None

    def take(self, received: list[tuple[bytes, bytes]], max_messages: int) -> None:
        take_messages(self.reader.gets, self.nothing, received, max_messages)

    def reply(self) -> Any:
        reply = self.reader.gets()
        return NOTHING if reply is self.nothing else reply

    def fill(self, timeout: float) -> bool:
        """Feed the reader what one non-blocking ``recv`` returns, polling first for
        up to ``timeout`` seconds when nothing has arrived.

        :raises redis.ConnectionError: the server closed the connection.
        :raises OSError: the connection broke.
        """
        if self._recv():
            return True
        if timeout <= 0:
            return False
        self.poller.poll(timeout * 1000)
        return self._recv()

    def _recv(self) -> bool:
        try:
            size = self.sock.recv_into(self.buffer)
        except _NOTHING_YET:
            return False
        if size == 0:
            raise RedisConnectionError("the server closed the connection")
        self.reader.feed(self.buffer, 0, size)
        return True


# -- asyncio --------------------------------------------------------------------------


class AsyncWire:
    """A subscribed ``redis.asyncio`` connection read through
    ``read_response(timeout=...)``: works with any parser."""

    may_send_under_reader = True  # one event loop: a write never races a read

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._replies: collections.deque[Any] = collections.deque()
        #: The event loop the connection belongs to: its writes happen there.
        self._loop = asyncio.get_running_loop()

    @classmethod
    def of(cls, conn: Any) -> AsyncWire:
        """The hiredis wire of ``conn`` when its parser is redis-py's asyncio hiredis
        parser, else a wire through ``redis.asyncio``."""
        return AsyncHiredisWire.make(conn) or AsyncWire(conn)

    def take(self, received: list[tuple[bytes, bytes]], max_messages: int) -> None:
        take_messages(self.reply, NOTHING, received, max_messages)

    def reply(self) -> Any:
        return self._replies.popleft() if self._replies else NOTHING

    async def fill(self, timeout: float) -> bool:
        # A timeout of its own, not a cancellation from outside: redis-py then
        # neither drops the connection nor loses a half-read reply.
        reply = await self.conn.read_response(
            timeout=max(timeout, 0.0), disconnect_on_error=False, push_request=True
        )
        if reply is None:
            return False
        self._replies.append(reply)
        return True

    async def send(self, data: bytes) -> None:
        writer = self.conn._writer
        if writer is None:
            raise RedisConnectionError("the connection is closed")
        writer.write(data)
        await writer.drain()

    def nudge(self, data: bytes) -> None:
        with contextlib.suppress(RuntimeError):  # its loop is closed: nobody reads
            self._loop.call_soon_threadsafe(self._write_now, data)

    def _write_now(self, data: bytes) -> None:
        writer = self.conn._writer
        if writer is not None and not writer.transport.is_closing():
            writer.write(data)

    def interrupt(self) -> None:
        writer = self.conn._writer
        if writer is not None:
            writer.transport.abort()


class AsyncHiredisWire(AsyncWire):
    """Reads of a subscribed ``redis.asyncio`` connection through its stream reader
    into redis-py's hiredis reader: what has arrived is taken without waiting, and
    only an empty buffer waits (with a deadline) for the next bytes."""

    def __init__(self, conn: Any, reader: Any, nothing: object) -> None:
        super().__init__(conn)
        self.stream: Any = conn._reader
        self.reader = reader
        self.nothing = nothing

    @classmethod
    def make(cls, conn: Any) -> AsyncHiredisWire | None:
        found = _hiredis_reader(conn, "_AsyncHiredisParser")
        stream = getattr(conn, "_reader", None)
        if found is None or not isinstance(stream, asyncio.StreamReader):
            return None
        if not isinstance(getattr(stream, "_buffer", None), bytearray):  # pragma: no cover
            return None
        return cls(conn, *found)

    def take(self, received: list[tuple[bytes, bytes]], max_messages: int) -> None:
        take_messages(self.reader.gets, self.nothing, received, max_messages)

    def reply(self) -> Any:
        reply = self.reader.gets()
        return NOTHING if reply is self.nothing else reply

    async def fill(self, timeout: float) -> bool:
        """Feed the reader what the stream holds, waiting up to ``timeout`` seconds
        for it when it holds nothing.

        :raises redis.ConnectionError: the server closed the connection.
        :raises OSError: the connection broke.
        """
        stream = self.stream
        if stream._buffer or stream.at_eof():
            data = await stream.read(_READ_SIZE)  # returns at once: no suspension
        elif timeout <= 0:
            return False
        else:
            try:
                data = await within(stream.read(_READ_SIZE), timeout)
            except asyncio.TimeoutError:
                return False
        if not data:
            raise RedisConnectionError("the server closed the connection")
        self.reader.feed(data)
        return True
