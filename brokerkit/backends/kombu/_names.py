"""Exchange and queue names: one exchange per topic, one queue per group.

``|`` separates the parts: it is in no prefix, topic or group name, so a name splits
back into them unambiguously (``brokerkit|orders|email``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SEPARATOR", "Names"]

SEPARATOR = "|"


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
