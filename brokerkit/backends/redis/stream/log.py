"""Reading a stream as a log, without a consumer group (XREAD).

Nothing is leased, acked or counted: a log reader only remembers where it is,
as the :attr:`LogEntry.position` of the last entry it read.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass

from brokerkit._error_text import value_text
from brokerkit._message import Message
from brokerkit.exceptions import InvalidOption

__all__ = ["LogEntry", "check_count", "check_position", "check_seconds", "group_start"]

_ENTRY_ID = re.compile(r"\d+(-\d+)?")

#: Each of an entry id's two numbers is an unsigned 64-bit integer in Redis.
_MAX_ID_PART = 2**64 - 1

#: The largest COUNT Redis takes (a signed 64-bit integer).
MAX_COUNT = 2**63 - 1


@dataclass(frozen=True)
class LogEntry:
    """One stream entry read as a log.

    :ivar position: the entry's stream id (``1700000000000-0``); pass it as
        ``after`` to read on from here.
    :ivar message: the message stored in the entry.
    """

    position: str
    message: Message


def check_position(position: str, what: str, *, words: bool = True) -> str:
    """``position`` if it is a stream entry id; else an InvalidOption naming ``what``,
    which says that ``'earliest'`` and ``'latest'`` are valid too when ``words``."""
    if (
        not isinstance(position, str)
        or _ENTRY_ID.fullmatch(position) is None
        or any(len(part) > 20 or int(part) > _MAX_ID_PART for part in position.split("-"))
    ):
        shown = position if not isinstance(position, str) or len(position) <= 60 else position[:60]
        valid = "'earliest', 'latest' or a stream entry id" if words else "a stream entry id"
        raise InvalidOption(
            f"{what} must be {valid} such as "
            f"'1700000000000-0' (each number at most {_MAX_ID_PART}), got {shown!r}"
        )
    return position


def check_seconds(value: object, what: str) -> float:
    """``value`` as a finite float of seconds, 0 or more; else an InvalidOption
    naming ``what``. Any real number passes (int, float, ``Fraction``, a numpy
    scalar...), a bool does not; one too large for a float is infinite."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidOption(
            f"{what} must be a number of seconds (int or float, 0 or more), "
            f"got {type(value).__name__}"
        )
    huge = False
    try:
        seconds = float(value)
    except OverflowError:
        seconds, huge = math.inf, True
    if not math.isfinite(seconds) or seconds < 0:
        shown = repr(value)
        if huge:
            shown = "a huge int" if isinstance(value, numbers.Integral) else "a huge number"
        raise InvalidOption(f"{what} must be a finite number of seconds, 0 or more, got {shown}")
    return seconds


def check_count(count: object, what: str, low: int) -> int:
    """``count`` as an int if it is a whole number (an int, a numpy integer...; not a
    bool) from ``low`` to :data:`MAX_COUNT`; else an InvalidOption naming ``what``."""
    whole = None
    if not isinstance(count, bool) and isinstance(count, numbers.Integral):
        whole = int(count)
    if whole is None or not low <= whole <= MAX_COUNT:
        shown = "a huge int" if whole is not None and whole > MAX_COUNT else value_text(count)
        raise InvalidOption(f"{what} must be a whole number from {low} to {MAX_COUNT}, got {shown}")
    return whole


def group_start(start: str | None, what: str = "start") -> str:
    """The XGROUP CREATE id for a subscription's ``start``: ``earliest`` (the
    default) is ``0``, ``latest`` is ``$``, anything else must be an entry id (an
    InvalidOption naming the argument ``what`` if it is not)."""
    if start is None or start == "earliest":
        return "0"
    if start == "latest":
        return "$"
    return check_position(start, what)
