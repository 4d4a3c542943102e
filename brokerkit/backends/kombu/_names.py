"""Exchange and queue names: one exchange per topic, one queue per group.

``|`` separates the parts: it is in no prefix, topic or group name, so a name splits
back into them unambiguously (``brokerkit|orders|email``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from brokerkit.exceptions import InvalidTopic

__all__ = ["MAX_NAME_BYTES", "SEPARATOR", "Names"]

SEPARATOR = "|"
#: AMQP 0-9-1 sends exchange and queue names as short strings: at most 255 bytes.
MAX_NAME_BYTES = 255


@dataclass(frozen=True)
class Names:
    """The names of one prefix's exchanges and queues."""

    prefix: str

    def exchange(self, topic: str) -> str:
        """The fanout exchange every message of ``topic`` is published to."""
        return f"{self.prefix}{SEPARATOR}{topic}"

    def queue(self, topic: str, group: str) -> str:
        """The queue of ``group``: bound to the topic's exchange, shared by its members."""
        return f"{self.prefix}{SEPARATOR}{topic}{SEPARATOR}{group}"

    def topic_of(self, exchange: str) -> str | None:
        """The topic whose exchange is ``exchange``, or None for another exchange."""
        head, sep, topic = exchange.partition(SEPARATOR)
        if head != self.prefix or not sep or SEPARATOR in topic:
            return None
        return topic

    def check(self, names: Iterable[str]) -> None:
        """Check that each of ``names`` fits in an AMQP short string (UTF-8).

        :raises InvalidTopic: one does not, naming it, its length and the limit.
        """
        for name in names:
            size = len(name.encode("utf-8"))
            if size > MAX_NAME_BYTES:
                raise InvalidTopic(
                    f"the AMQP name {name!r} that brokerkit builds for this topic and "
                    f"group (<prefix>|<topic>|<group>, and <topic>.dlq for dead letters) "
                    f"is {size} bytes; AMQP allows at most {MAX_NAME_BYTES}. Nothing was "
                    "declared: use a shorter topic, group or prefix"
                )
