"""Checking the arguments of ``subscribe`` and ``consume``, and naming a consumer that
names none: pure functions, no I/O (one copy for the asyncio and the sync broker)."""

from __future__ import annotations

import os
import socket
from typing import Protocol

from brokerkit._capabilities import Capability
from brokerkit._error_text import value_text
from brokerkit._topics import check_consumer, check_group, check_pattern, check_topic
from brokerkit.exceptions import InvalidOption

__all__ = ["MAX_PREFETCH", "check_limit", "check_subscribe", "consumer_name"]

#: The most messages one fetch may ask for: more than any consumer holds in memory
#: at once, and within what every backend's fetch command takes (Redis's ``COUNT``,
#: a JetStream batch).
MAX_PREFETCH = 1_000_000


class _Requires(Protocol):
    def require(self, capability: Capability, what: str) -> None: ...


def check_subscribe(
    broker: _Requires,
    topic: str,
    *,
    group: str | None,
    consumer: str | None,
    prefetch: int,
    start: str | None,
    pattern: bool,
    prefetch_bytes: int | None,
) -> None:
    """Check ``subscribe``'s arguments (see there), and that ``broker``'s backend can
    do what they ask.

    :raises InvalidTopic: the topic, or the pattern, is not valid.
    :raises InvalidOption: a group, consumer, prefetch or prefetch_bytes is not valid.
    :raises Unsupported: a pattern, a group or a start the backend does not have.
    """
    if pattern:
        broker.require(Capability.PATTERNS, "subscribe to a pattern")
        check_pattern(topic)
    else:
        check_topic(topic)
    if group is not None:
        broker.require(Capability.COMPETING, "put consumers in groups")
        check_group(group)
    if start is not None:
        broker.require(Capability.REPLAY, "start a group at a chosen position")
    check_consumer(consumer)
    if (
        not isinstance(prefetch, int)
        or isinstance(prefetch, bool)
        or not 1 <= prefetch <= MAX_PREFETCH
    ):
        raise InvalidOption(
            f"prefetch must be a whole number from 1 to {MAX_PREFETCH:,}, "
            f"got {value_text(prefetch)}"
        )
    if prefetch_bytes is not None and (
        not isinstance(prefetch_bytes, int)
        or isinstance(prefetch_bytes, bool)
        or prefetch_bytes < 1
    ):
        raise InvalidOption(
            f"prefetch_bytes must be a whole number of bytes, 1 or more (or None), "
            f"got {value_text(prefetch_bytes)}"
        )


def check_limit(limit: object) -> None:
    """Check ``consume``'s ``limit``: None, or a whole number of deliveries, 0 or more.

    :raises InvalidOption: otherwise.
    """
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise InvalidOption(
            f"limit must be None or a whole number of deliveries, 0 or more, "
            f"got {value_text(limit)}"
        )


def consumer_name() -> str:
    """A consumer's name unique to this process: host, process id, random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
