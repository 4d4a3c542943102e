"""A publish's deadline, for a connection RabbitMQ stops reading (``connection.blocked``).

During a memory or disk alarm RabbitMQ stops reading from every connection that
publishes (it tells a client that asked, as py-amqp does, with ``connection.blocked``)
until the alarm clears, and keeps sending its heartbeats meanwhile: no socket timeout
ends a wait on such a connection, and a publish waited for its confirms (or for room
to write a large body) for as long as the alarm lasted.

So each socket read and write of a publish is bounded by what is left of the link's
``publish_timeout`` (:class:`Deadline`), and so is each frame py-amqp reads within one
of them (:func:`frame_read`): py-amqp reopens a channel RabbitMQ closed (a publish to
an exchange deleted during the alarm) inside the read that took the close in, and
waits there for an answer the blocked server does not send, each heartbeat a new
read. Once it runs out the connection is dropped (a
frame may be half written, and a channel close would wait on the server that does not
read) and :class:`PublishTimeout` raised: the next call connects anew. A connection
RabbitMQ said it blocked (:class:`BlockedState`) is not used again either: a call that
finds it so connects anew (see :meth:`Link.call`), as a new connection is only
blocked once it publishes.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

import amqp.exceptions  # type: ignore[import-untyped]

from brokerkit.exceptions import ConnectionFailed

__all__ = ["BlockedState", "Deadline", "Expired", "PublishTimeout", "frame_read", "keeping_alive"]

_T = TypeVar("_T")


class PublishTimeout(ConnectionFailed):
    """RabbitMQ did not take the messages of a publish within ``publish_timeout`` (it
    blocked the connection, or did not confirm them): they may or may not be stored."""


class BlockedState:
    """Whether RabbitMQ said it blocked the current connection (py-amqp does not read
    its reason: RabbitMQ's log has it)."""

    def __init__(self) -> None:
        #: Set from ``connection.blocked`` until ``connection.unblocked``.
        self.reason: str | None = None

    def watch(self, connection: Any) -> None:
        """Listen to a new py-amqp ``connection`` (nothing blocks it yet)."""
        self.reason = None
        connection.on_blocked = self._blocked
        connection.on_unblocked = self._unblocked

    def _blocked(self, reason: str | None = None) -> None:
        self.reason = "connection.blocked"

    def _unblocked(self) -> None:
        self.reason = None


class Deadline:
    """``seconds`` from now, for the socket operations of one publish: each waits at
    most ``io_timeout`` (a silent server: a lost connection, as any wait) and at most
    what is left, after which :meth:`run` raises :class:`Expired`."""

    def __init__(self, seconds: float, io_timeout: float, sock: Callable[[], Any]) -> None:
        self.seconds = seconds
        self._at = time.monotonic() + seconds
        self._io_timeout = io_timeout
        self._sock = sock
        #: Whether the socket's timeout was set to what is left (restored after).
        self._bounded = False

    def run(self, operation: Callable[[], _T]) -> _T:
        """Run ``operation`` (one socket read or write of py-amqp) within the deadline,
        every frame it reads too (see :func:`frame_read`).

        :raises Expired: the deadline ran out (nothing else is done about it).
        """
        _tick()
        token = _running.set(self)
        try:
            self._bound()
            return operation()
        except (TimeoutError, amqp.exceptions.RecoverableConnectionError) as exc:
            # (py-amqp raises the latter for a write that timed out)
            if self._bounded and _timed_out(exc):
                raise Expired from None
            raise
        finally:
            _running.reset(token)
            if self._bounded:
                self._bounded = False
                sock = self._sock()
                if sock is not None:
                    # (closed under it: the call finds the connection lost)
                    with contextlib.suppress(OSError):
                        sock.settimeout(self._io_timeout)

    def _bound(self) -> None:
        """Give the socket's next waits at most what is left.

        :raises Expired: nothing is left.
        """
        left = self._at - time.monotonic()
        if left <= 0:
            raise Expired
        if left < self._io_timeout:
            self._bounded = True
            sock = self._sock()
            if sock is not None:
                sock.settimeout(left)


#: The deadline whose :meth:`Deadline.run` this thread is in.
_running: ContextVar[Deadline | None] = ContextVar("brokerkit_kombu_deadline", default=None)
#: What keeps another connection alive while this thread waits on a publish (see
#: :func:`keeping_alive`).
_beside: ContextVar[Callable[[], None] | None] = ContextVar("brokerkit_kombu_beside", default=None)


@contextlib.contextmanager
def keeping_alive(tick: Callable[[], None]) -> Iterator[None]:
    """Call ``tick`` at every frame a publish of this thread reads (its server's
    heartbeats too), and as each of its socket operations begins: a dead letter is
    published holding the reading connection, whose heartbeats nothing else sends
    meanwhile (the reaper skips a connection another thread holds), and RabbitMQ
    would close it as dead during an alarm longer than two heartbeats. ``tick`` runs
    outside the publish's deadline, and nothing it reads ticks again."""
    token = _beside.set(tick)
    try:
        yield
    finally:
        _beside.reset(token)


def _tick() -> None:
    tick = _beside.get()
    if tick is None:
        return
    running, beside = _running.set(None), _beside.set(None)
    try:
        tick()
    finally:
        _beside.reset(beside)
        _running.reset(running)


def frame_read() -> None:
    """A frame was read (called by the connection's frame handler, before it
    dispatches it): within a :meth:`Deadline.run`, the waits after it get at most what
    is left, so that the server's heartbeats do not carry a wait py-amqp runs inside
    the read (reopening a channel RabbitMQ closed) past the deadline; and the
    connection :func:`keeping_alive` names is kept alive.

    :raises Expired: the deadline ran out (the frame is not dispatched: the publish
        drops the connection).
    """
    deadline = _running.get()
    if deadline is not None:
        deadline._bound()
        _tick()


class Expired(Exception):
    """Internal: a publish's deadline ran out (see :meth:`Deadline.run`)."""


def _timed_out(exc: BaseException) -> bool:
    return isinstance(exc, (TimeoutError, socket.timeout)) or "timed out" in str(exc)
