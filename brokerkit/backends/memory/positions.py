"""Where a memory broker's new group starts: the ``start`` a subscription may name,
and the offset of a topic's log it stands for."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from brokerkit._error_text import value_text
from brokerkit.exceptions import InvalidOption

if TYPE_CHECKING:
    from brokerkit.backends.memory.store import Topic

__all__ = ["check_start", "pattern_start", "start_offset"]


def check_start(start: object) -> str | None:
    """Return ``start`` if it names a place a subscription's group may start at:
    ``None``, ``"earliest"``, ``"latest"`` or an offset written in decimal digits, 30
    at most (``"42"``), a str as every backend's positions are.

    :raises InvalidOption: anything else (an int, a negative or padded offset, another
        word), whether or not the group exists yet, as on ``redis+stream``.
    """
    if start is None:
        return None
    if isinstance(start, str) and (start in ("earliest", "latest") or _OFFSET.fullmatch(start)):
        return start
    number = isinstance(start, int) and not isinstance(start, bool)
    if isinstance(start, int) and not -(10**20) < start < 10**20:  # repr: 4300 digits at most
        shown = "a huge int"
        hint = " (an offset is a str of digits)"
    else:
        shown = value_text(start)
        hint = f" (an offset is a str: start='{start}')" if number else ""
    raise InvalidOption(
        "start must be 'earliest', 'latest' or a whole-number offset written in digits "
        f"(30 at most) such as '42', got {shown}{hint}"
    )


#: An offset: decimal digits, a few more than the largest int64 has with zeros before
#: it (no store holds that many messages; past 4300 digits int() would refuse it).
_OFFSET = re.compile(r"[0-9]{1,30}")


def start_offset(topic: Topic, start: str | None) -> int:
    """Where a new group of ``topic`` starts (``start`` as :func:`check_start` allows)."""
    start = check_start(start)
    if start is None or start == "earliest":
        return topic.first_offset
    if start == "latest":
        return topic.next_offset
    return max(int(start), topic.first_offset)


def pattern_start(start: str | None) -> str:
    """Where a pattern subscription's group starts in each matching topic: "latest"
    (the default: what is published after it subscribed) or "earliest"; a position
    names a place in one topic, so it is refused with :class:`InvalidOption`."""
    if start is None or start == "latest":
        return "latest"
    if start == "earliest":
        return start
    raise InvalidOption(
        f"with pattern=True, start must be 'earliest' or 'latest', got {start!r}: "
        "a position names a place in one topic (subscribe to that topic to start there)"
    )
