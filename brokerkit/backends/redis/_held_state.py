"""What a reader of a kept connection (:mod:`._held_async`, and the sync ``_held.py``
generated from it) shares between its commands and its close, which in the sync twin
may run in another thread: read and changed under one lock, held for no I/O, so that
a close never gives back a connection that a command has taken. A process made by
``fork`` gets each lock anew (one held by another thread of the parent at the fork
would never be released in the child)."""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Any

__all__ = ["IDLE_CHECK", "HeldState"]

#: A kept connection idle this many seconds is looked at before its next command, as
#: redis-py's pool looks at every connection it hands out: one the server closed
#: meanwhile (its ``timeout``, a restart) is opened again rather than failing that
#: command. A connection in steady use is not (a poll of its socket a command).
IDLE_CHECK = 1.0

_EVERY: weakref.WeakSet[HeldState] = weakref.WeakSet()


def _new_locks_after_fork() -> None:
    for state in list(_EVERY):
        state._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_locks_after_fork)


class HeldState:
    """The kept connection (None: none yet, or given back), the process that took it,
    whether a command is under way on it, and whether the reader is closed."""

    __slots__ = ("__weakref__", "_lock", "closed", "connection", "pid", "reading", "used_at")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        _EVERY.add(self)
        self.connection: Any = None
        self.pid = 0
        self.reading = False
        self.closed = False
        self.used_at = 0.0

    def begin(self, pid: int) -> tuple[bool, Any, bool]:
        """A command starts in process ``pid``: (whether another command has the kept
        connection, which then stays that one's; else the connection this one takes,
        None for a new one from the pool; and whether it was idle :data:`IDLE_CHECK`
        seconds or more). A forked child never takes its parent's connection (never
        given back: redis-py made the child a pool of its own)."""
        with self._lock:
            if self.reading:
                return True, None, False
            self.reading = True
            connection = self.connection if self.pid == pid else None
            return False, connection, time.monotonic() - self.used_at >= IDLE_CHECK

    def keep(self, connection: Any, pid: int) -> None:
        """The command took ``connection`` from the pool in process ``pid``: kept."""
        with self._lock:
            self.connection, self.pid = connection, pid

    def drop(self, connection: Any) -> None:
        """``connection`` failed: no longer kept (its command gives it back)."""
        with self._lock:
            if self.connection is connection:
                self.connection = None

    def end(self, connection: Any) -> bool:
        """The command on ``connection`` ended: whether the command gives it back now
        (the reader was closed meanwhile)."""
        with self._lock:
            self.reading = False
            self.used_at = time.monotonic()
            give_back = self.closed and connection is not None and self.connection is connection
            if give_back:
                self.connection = None
            return give_back

    def close(self, pid: int) -> Any:
        """The reader closes in process ``pid``: the connection to give back now, or
        None (none is kept, the command under way gives it back when it ends, or it is
        a parent process's, never given back in a child)."""
        with self._lock:
            self.closed = True
            connection = self.connection
            if connection is None or self.reading:
                return None
            self.connection = None
            return connection if self.pid == pid else None
