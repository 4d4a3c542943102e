"""Whether a publish whose reply was lost stored its message: brokerkit's retry of a
publish looks before it adds the message again.

A connection lost between an ``XADD`` (or a batch's publish script) and its reply
leaves the outcome unknown: the server may have stored the message. The retry then
reads the stream's newest entries, back to a little before the first attempt was sent
by the server's clock (``TIME``, less the time since then, less :data:`SLACK_MS`), for
an entry whose header is the message's (it holds the message's id, unique): found, the
message is not added again. Only a retry pays for this; a publish that got its reply
never looks. An entry trimmed away since (``maxlen``, ``max_age``), or one stamped
by a master whose clock ran more than the slack ahead of the one the retry asks (a
failover), is not found: the message is then stored again, as at-least-once allows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from brokerkit.backends.redis._stream_fields import HEADER_FIELD

__all__ = ["PAGE", "SLACK_MS", "AddOnce", "landed"]

#: Entries one ``XREVRANGE`` of the look reads.
PAGE = 100
#: How far (ms) before the first attempt by the server's clock the look goes back.
SLACK_MS = 5000


async def landed(
    execute: Callable[..., Awaitable[Any]], key: str, header: str, started: float
) -> bool:
    """Whether the stream ``key`` holds an entry whose header is ``header``, added no
    sooner than ``started`` (this host's ``time.monotonic()`` before the first attempt
    was sent); ``execute(*command)`` runs a command (its reply parsed by redis-py or
    as it came: both are read)."""
    seconds, micros = await execute("TIME")
    elapsed_ms = math.ceil((time.monotonic() - started) * 1000)
    since = max(0, int(seconds) * 1000 + int(micros) // 1000 - elapsed_ms - SLACK_MS)
    wanted = header.encode()
    end: Any = "+"
    while True:
        entries = await execute("XREVRANGE", key, end, since, "COUNT", PAGE)
        for _, fields in entries:
            if _header_of(fields) == wanted:
                return True
        if len(entries) < PAGE:
            return False
        last = entries[-1][0]
        end = b"(" + (last if isinstance(last, bytes) else str(last).encode())


def _header_of(fields: Any) -> Any:
    """The header field of an entry's fields (a dict, or a flat list as they came)."""
    if isinstance(fields, dict):
        return fields.get(HEADER_FIELD)
    for i in range(0, len(fields) - 1, 2):
        if fields[i] == HEADER_FIELD:
            return fields[i + 1]
    return None


class AddOnce:
    """One ``XADD`` (``args``, with the message's ``header``, to the stream ``key``),
    sent by ``execute``; called again (a retry after a lost connection), it first looks
    whether the one sent landed (:func:`landed`), and sends it again only if not. The
    first call sends at once: it adds nothing to a publish's cost."""

    __slots__ = ("_args", "_execute", "_header", "_key", "_started")

    def __init__(
        self, execute: Callable[..., Awaitable[Any]], args: list[Any], key: str, header: str
    ) -> None:
        self._execute = execute
        self._args = args
        self._key = key
        self._header = header
        self._started: float | None = None

    def __call__(self) -> Any:
        if self._started is None:
            self._started = time.monotonic()
            return self._execute(*self._args)
        return self._again(self._started)

    async def _again(self, started: float) -> None:
        if not await landed(self._execute, self._key, self._header, started):
            await self._execute(*self._args)
