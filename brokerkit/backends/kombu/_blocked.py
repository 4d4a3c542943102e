"""A publish's deadline, for a connection RabbitMQ stops reading (``connection.blocked``).

During a memory or disk alarm RabbitMQ stops reading from every connection that
publishes (it tells a client that asked, as py-amqp does, with ``connection.blocked``)
until the alarm clears, and keeps sending its heartbeats meanwhile: no socket timeout
ends a wait on such a connection, and a publish waited for its confirms (or for room
to write a large body) for as long as the alarm lasted.

So each socket read and write of a publish is bounded by what is left of the link's
``publish_timeout`` (:class:`Deadline`); once it runs out the connection is dropped (a
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
from collections.abc import Callable
from typing import Any, TypeVar

import amqp.exceptions  # type: ignore[import-untyped]

from brokerkit.exceptions import ConnectionFailed

__all__ = ["BlockedState", "Deadline", "Expired", "PublishTimeout"]

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
    what is left, after which :meth:`run` raises :meth:`expired`'s error."""

    def __init__(self, seconds: float, io_timeout: float, sock: Callable[[], Any]) -> None:
        self.seconds = seconds
        self._at = time.monotonic() + seconds
        self._io_timeout = io_timeout
        self._sock = sock

    def run(self, operation: Callable[[], _T]) -> _T:
        """Run ``operation`` (one socket read or write of py-amqp) within the deadline.

        :raises Expired: the deadline ran out (nothing else is done about it).
        """
        left = self._at - time.monotonic()
        if left <= 0:
            raise Expired
        bounded = left < self._io_timeout
        sock = self._sock()
        if sock is not None and bounded:
            sock.settimeout(left)
        try:
            return operation()
        except (TimeoutError, amqp.exceptions.RecoverableConnectionError) as exc:
            # (py-amqp raises the latter for a write that timed out)
            if bounded and _timed_out(exc):
                raise Expired from None
            raise
        finally:
            if sock is not None and bounded:
                # (closed under it: the call finds the connection lost)
                with contextlib.suppress(OSError):
                    sock.settimeout(self._io_timeout)


class Expired(Exception):
    """Internal: a publish's deadline ran out (see :meth:`Deadline.run`)."""


def _timed_out(exc: BaseException) -> bool:
    return isinstance(exc, (TimeoutError, socket.timeout)) or "timed out" in str(exc)
