"""Reading a stream as a log, without a consumer group (XREAD).

Nothing is leased, acked or counted: a log reader only remembers where it is,
as the :attr:`LogEntry.position` of the last entry it read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from brokerkit._message import Message
from brokerkit.exceptions import InvalidOption

__all__ = ["LogEntry", "check_position", "group_start"]

_ENTRY_ID = re.compile(r"\d+(-\d+)?")


@dataclass(frozen=True)
class LogEntry:
    """One stream entry read as a log.

    :ivar position: the entry's stream id (``1700000000000-0``); pass it as
        ``after`` to read on from here.
    :ivar message: the message stored in the entry.
    """

    position: str
    message: Message


def check_position(position: str, what: str) -> str:
    """``position`` if it is a stream entry id; else an InvalidOption naming ``what``."""
    if not isinstance(position, str) or _ENTRY_ID.fullmatch(position) is None:
        raise InvalidOption(
            f"{what} must be 'earliest', 'latest' or a stream entry id such as "
            f"'1700000000000-0', got {position!r}"
        )
    return position


def group_start(start: str | None) -> str:
    """The XGROUP CREATE id for a subscription's ``start``: ``earliest`` (the
    default) is ``0``, ``latest`` is ``$``, anything else must be an entry id."""
    if start is None or start == "earliest":
        return "0"
    if start == "latest":
        return "$"
    return check_position(start, "start")
