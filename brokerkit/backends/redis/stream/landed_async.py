"""Whether a publish whose reply was lost stored its message: brokerkit's retry of a
publish looks before it adds the message again.

A connection lost between an ``XADD`` (or a batch's publish script) and its reply
leaves the outcome unknown: the server may have stored the message. The retry then
reads the stream's entries stamped in a window around the lost attempt, by the
server's clock (``TIME``, on the stream's node): from :data:`SLACK_MS` before the
attempt was sent to :data:`SLACK_MS` after it failed, upward (``XRANGE``), for an entry
whose header is the message's (it holds the message's id, unique): found, the message
is not added again. That end holds where the server closed the connection (it ran
what it had read before); after a timeout the server may run the command later still
(a busy or frozen server reads it from its socket buffer once it can): the window then
ends at the look's own server time. Entries added after the window (other publishes
during an outage) are never read. Only a retry pays for this; a publish that got its
reply never looks, nor does one whose attempt failed before anything was written (the
pool had no connection to give, or the kept connection could not be opened:
:func:`unwritten`).

A look is bounded: pages sized to about :data:`PAGE_BYTES` by the entries seen, at
most :data:`LOOK_ENTRIES` entries and :data:`LOOK_BYTES` of them. Past that the
outcome stays unknown: the message is sent again (a WARNING says so), as at-least-once
allows. So it is, too, for an entry trimmed away since (``maxlen``, ``max_age``), or one
stamped by a master whose clock ran more than the slack away from the one the retry
asks (a failover). After a look that found nothing and a new attempt, the next look
covers the new attempt's window.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError
from redis.exceptions import TimeoutError as RedisTimeoutError

from brokerkit._logging import log_fields
from brokerkit.backends.redis._held_async import unsent
from brokerkit.backends.redis._stream_fields import HEADER_FIELD

__all__ = [
    "FIRST_PAGE",
    "LOOK_BYTES",
    "LOOK_ENTRIES",
    "PAGE_BYTES",
    "SLACK_MS",
    "AddOnce",
    "Lost",
    "closed_by_server",
    "landed",
    "unwritten",
]

log = logging.getLogger("brokerkit.redis")

#: How far (ms) around the lost attempt by the server's clock the look reads.
SLACK_MS = 5000
#: Entries the first page of a look asks (their size is not known yet).
FIRST_PAGE = 10
#: About the bytes of entries one page of a look reads: its ``COUNT`` is chosen from the
#: sizes of the entries seen so far (at most :data:`MAX_PAGE`).
PAGE_BYTES = 1 << 20
MAX_PAGE = 1000
#: A look reads at most so many entries, and so many bytes of them: past either, the
#: outcome is unknown and the message is sent again.
LOOK_ENTRIES = 10_000
LOOK_BYTES = 16 << 20

#: A command that returns the server's ``TIME`` (the stream's node's, on a cluster).
Clock = Callable[[], Awaitable[Any]]


def unwritten(exc: BaseException) -> bool:
    """Whether ``exc``, raised by a command, proves that nothing of it was written: the
    pool had no connection to give (its cap), or the reader's connection could not be
    opened (:func:`.._held_async.unsent`). Judged by where it was raised, never by its
    text: a command redis-py sent, then failed to send again, reads "connecting to" too.
    Any other error may follow a write (a wrong "possibly written" costs a bounded look;
    a wrong "unwritten" stores the message twice)."""
    return isinstance(exc, MaxConnectionsError) or unsent(exc)


def closed_by_server(exc: BaseException) -> bool:
    """Whether ``exc`` is the server's end of the connection (an end of file, a reset):
    what it had read, it ran before. A timeout is not (a busy or frozen server still
    holds the command, and may run it later)."""
    return isinstance(exc, RedisConnectionError) and not isinstance(exc, RedisTimeoutError)


async def landed(
    execute: Callable[..., Awaitable[Any]],
    key: str,
    header: str,
    sent: float,
    failed: float | None,
    clock: Clock | None = None,
) -> bool:
    """Whether the stream ``key`` holds an entry whose header is ``header``, stamped
    between :data:`SLACK_MS` before ``sent`` and as long after ``failed`` (this host's
    ``time.monotonic()`` as the attempt was sent and as it failed; None: as long after
    the server's time as the look asks it); ``execute(*command)`` runs a command (its reply
    parsed by redis-py or as it came: both are read), ``clock()`` asks ``TIME`` where
    ``execute`` would not ask the stream's node. False too past the look's bounds
    (logged)."""
    before = time.monotonic()  # the window's end is no later than the server's time then
    seconds, micros = await (clock() if clock is not None else execute("TIME"))
    after = time.monotonic()  # its start no later than the server's time less this
    server_ms = int(seconds) * 1000 + int(micros) // 1000
    low = max(0, server_ms - math.ceil((after - sent) * 1000) - SLACK_MS)
    if failed is None:
        # (a server frozen with the command half read may finish reading it only now,
        # after this TIME: the slack covers that too)
        high = server_ms + SLACK_MS
    else:
        high = max(low, server_ms - int((before - failed) * 1000) + SLACK_MS)
    wanted = header.encode()
    start: Any = low
    count, seen, size = FIRST_PAGE, 0, 0
    while True:
        entries = await execute("XRANGE", key, start, high, "COUNT", count)
        for _, fields in entries:
            found = _header_of(fields)
            if found == wanted:
                return True
            size += _size(fields)
        seen += len(entries)
        if len(entries) < count:
            return False
        if seen >= LOOK_ENTRIES or size >= LOOK_BYTES:
            log.warning(
                "redis+stream: a publish to the stream %r lost its reply; the look for "
                "it read %d entries (%d bytes) of its window and stopped there: its "
                "outcome is unknown, so it is sent again (it may be stored twice)",
                key,
                seen,
                size,
                extra=log_fields(),
            )
            return False
        last = entries[-1][0]
        start = b"(" + (last if isinstance(last, bytes) else str(last).encode())
        fits = PAGE_BYTES * seen // max(size, 1)
        count = max(1, min(MAX_PAGE, fits, LOOK_ENTRIES - seen))


def _header_of(fields: Any) -> Any:
    """The header field of an entry's fields (a dict, or a flat list as they came)."""
    if isinstance(fields, dict):
        return fields.get(HEADER_FIELD)
    for i in range(0, len(fields) - 1, 2):
        if fields[i] == HEADER_FIELD:
            return fields[i + 1]
    return None


def _size(fields: Any) -> int:
    """About the bytes of an entry's fields."""
    parts = fields.items() if isinstance(fields, dict) else (fields,)
    return sum(len(value) for part in parts for value in part) + 16


class Lost:
    """One command's attempts: when the last was sent, and, when its outcome is
    unknown (it failed after it may have been written), when it failed.

    :ivar sent: ``time.monotonic()`` as the last attempt was sent.
    :ivar failed: ``time.monotonic()`` as it failed, or None: its outcome is known
        (it answered, nothing of it was written, or a look found it did not run).
    :ivar closed: it failed as the server closed the connection (see
        :func:`closed_by_server`): the server ran nothing of it later.
    """

    __slots__ = ("closed", "failed", "sent")

    def __init__(self) -> None:
        self.sent = 0.0
        self.failed: float | None = None
        self.closed = False

    def fail(self, exc: BaseException) -> None:
        """The attempt sent last raised ``exc`` (or answered with it, as a cluster
        pipeline returns a connection's error)."""
        self.failed = None if unwritten(exc) else time.monotonic()
        self.closed = closed_by_server(exc)

    async def look(
        self,
        execute: Callable[..., Awaitable[Any]],
        key: str,
        header: str,
        clock: Clock | None = None,
    ) -> bool:
        """Whether the attempt whose outcome is unknown stored the message
        (:func:`landed`); False, at no cost, when no outcome is unknown. Not found, the
        outcome is known (not stored): the next look, if any, is of the next attempt."""
        failed = self.failed
        if failed is None:
            return False
        end = failed if self.closed else None
        found = await landed(execute, key, header, self.sent, end, clock)
        self.failed = None
        return found


class AddOnce:
    """One ``XADD`` (``args``, with the message's ``header``, to the stream ``key``),
    sent by ``execute``; called again (a retry after a lost connection), it first looks
    whether the one sent landed (:meth:`Lost.look`), and sends it again only if not. The
    first call sends at once: it adds nothing to a publish's round trips."""

    __slots__ = ("_args", "_clock", "_execute", "_header", "_key", "_lost")

    def __init__(
        self,
        execute: Callable[..., Awaitable[Any]],
        args: list[Any],
        key: str,
        header: str,
        clock: Clock | None = None,
    ) -> None:
        self._execute = execute
        self._args = args
        self._key = key
        self._header = header
        self._clock = clock
        self._lost = Lost()

    async def __call__(self) -> None:
        lost = self._lost
        if lost.failed is not None and await lost.look(
            self._execute, self._key, self._header, self._clock
        ):
            return
        lost.sent = time.monotonic()
        try:
            await self._execute(*self._args)
        except BaseException as exc:
            lost.fail(exc)
            raise
