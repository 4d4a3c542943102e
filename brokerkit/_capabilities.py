"""What a backend promises, as flags a caller and the contract suite can test."""

from __future__ import annotations

import enum

__all__ = ["Capability"]


class Capability(enum.Flag):
    """The promises a backend makes. Combine with ``|``; test with ``in``.

    The contract suite checks each promise a backend declares, and skips the
    tests that need a promise it does not declare.
    """

    NONE = 0
    #: A message waits for a consumer that is not there yet.
    PERSISTENT = enum.auto()
    #: Deliveries are acked or nacked; an unsettled one comes back after the
    #: visibility timeout, and a live consumer can extend its lease.
    ACK = enum.auto()
    #: Consumers of one group share the messages; each goes to one of them.
    COMPETING = enum.auto()
    #: Every group (or subscriber) gets every message.
    FANOUT = enum.auto()
    #: A new group can read the topic's history from an offset.
    REPLAY = enum.auto()
    #: Rejected or poison messages go to a dead-letter topic.
    DEAD_LETTER = enum.auto()
    #: One consumer with no redeliveries sees messages in publish order.
    ORDERED = enum.auto()
    #: Subscriptions to glob patterns such as ``chat:room:*``.
    PATTERNS = enum.auto()
    #: A topic's length can be capped (``maxlen``).
    BOUNDED = enum.auto()
    #: The broker holds a message until a due time: ``publish(..., delay=)`` /
    #: ``at=`` and ``nack(delay=)``. The message waits in the broker, not in the
    #: consumer's memory (it survives the consumer's crash), and no consumer sees it
    #: before it is due.
    DELAY = enum.auto()

    def names(self) -> list[str]:
        """The names of the flags set, in declaration order."""
        return [flag.name for flag in Capability if flag and flag in self and flag.name]
