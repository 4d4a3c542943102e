"""The start of a Redis broker's close, as its retry loops hear of it.

A call that retries through a lost connection (:class:`~._client_async.Reconnector`, a
pub/sub subscribe) waits between attempts for up to ``reconnect_timeout`` in all. The
broker's close begins by telling its :class:`CloseSignal` (the core's ``_wake_waits``
hook): such a wait ends at once, and the call gives up, rather than go on retrying
against a dead server after the close has returned. One class for both sides: the
waiters are the sync or asyncio :class:`~brokerkit._acompat.Waiter`, which any thread
may wake.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any, Protocol

__all__ = ["CloseSignal", "Halt", "WakesOnClose", "cut"]


class _Wakeable(Protocol):
    def wake(self) -> None: ...


class CloseSignal:
    """Set once, when the broker's close begins (from any thread); wakes the waits
    between two attempts under way then."""

    __slots__ = ("_began", "_lock", "_waiting")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._began = False
        self._waiting: set[_Wakeable] = set()

    @property
    def began(self) -> bool:
        """Whether the close has begun."""
        return self._began

    def begin(self) -> None:
        """The close begins: wake every wait under way (it does not wait: no I/O)."""
        with self._lock:
            self._began = True
            waiting, self._waiting = self._waiting, set()
        for waiter in waiting:
            waiter.wake()

    def watch(self, waiter: _Wakeable) -> bool:
        """Have ``waiter`` woken when the close begins; whether it already has (then
        it is not kept)."""
        with self._lock:
            if self._began:
                return True
            self._waiting.add(waiter)
            return False

    def unwatch(self, waiter: _Wakeable) -> None:
        """Forget ``waiter`` (its wait is over)."""
        with self._lock:
            self._waiting.discard(waiter)


class WakesOnClose:
    """The core's ``_wake_waits`` hook for a Redis broker (sync or asyncio) that gives
    its retry loops ``_close_signal``: a call retrying against a lost server gives up
    as the close begins (a subscribe then raises BrokerClosed), rather than hold up the
    close or retry on after it. Listed before the core's broker class."""

    _close_signal: CloseSignal

    def _wake_waits(self) -> None:
        self._close_signal.begin()


class Halt:
    """The end of a pub/sub listener's reconnecting, from any thread: its subscription
    closes, or the broker's close begins (this is what the listener gives
    :meth:`CloseSignal.watch`). No further connection is made (:attr:`halted`, which the
    connection's handshake asks), the wait between two attempts is woken, and the
    connection being made is :func:`cut` (against a frozen server its handshake would
    wait out the socket timeout). The listener sets :attr:`pausing` (a
    :class:`~brokerkit._acompat.Waiter`) before it asks :attr:`halted` and waits, and
    :attr:`connecting` before it connects: each is woken or cut here, or finds
    :attr:`halted` set."""

    __slots__ = ("connecting", "halted", "pausing")

    def __init__(self) -> None:
        self.halted = False
        self.pausing: _Wakeable | None = None
        self.connecting: Any = None

    def wake(self) -> None:
        """Halt (no I/O: a wake-up and a socket's shutdown)."""
        self.halted = True
        pausing, connecting = self.pausing, self.connecting
        if pausing is not None:
            pausing.wake()
        if connecting is not None:
            cut(connecting)


def cut(conn: Any) -> None:
    """Shut down the socket of a redis-py connection (sync or asyncio), from any thread:
    a read of it under way (the handshake of a connection being made to a frozen
    server) ends at once, as a lost connection, instead of at its socket timeout; its
    owner then disconnects it as after any lost connection. Nothing if it has no
    socket yet.

    Shut down, not closed: its descriptor stays its own until its owner closes it (no
    other socket can be handed the number meanwhile), and a TLS socket's own state is
    left alone (the plain socket's shutdown is called). Under asyncio the event loop
    then reads the end of the stream, as when the server closes the connection.
    """
    sock = getattr(conn, "_sock", None)  # redis-py's sync connection
    if sock is None:
        transport = getattr(getattr(conn, "_writer", None), "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        sock = getattr(sock, "_sock", sock)  # (asyncio hands out a wrapper)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):  # closed meanwhile: nothing to wake
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
