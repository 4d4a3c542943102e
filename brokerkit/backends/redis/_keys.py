"""Where a topic lives in Redis: every key of one topic shares a cluster slot."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEAD_LETTER_SUFFIX", "Keyspace", "split_dead_letter"]

DEAD_LETTER_SUFFIX = ".dlq"


def split_dead_letter(topic: str) -> tuple[str, str]:
    """``topic`` as (the topic it dead-letters for, its ``.dlq`` suffixes):
    ``orders.dlq.dlq`` -> (``orders``, ``.dlq.dlq``), ``orders`` -> (``orders``, ``""``).

    Every trailing ``.dlq`` goes, so that a topic, its dead-letter topic and that
    one's dead-letter topic share one hash tag, hence one cluster slot. A topic that is
    nothing but ``.dlq`` suffixes keeps the first as its stem.
    """
    stem = topic
    while stem.endswith(DEAD_LETTER_SUFFIX) and len(stem) > len(DEAD_LETTER_SUFFIX):
        stem = stem[: -len(DEAD_LETTER_SUFFIX)]
    return stem, topic[len(stem) :]


@dataclass(frozen=True)
class Keyspace:
    """Key names under one prefix.

    A topic's keys are ``<prefix>:{<topic>}`` and ``<prefix>:{<topic>}:<part>...``;
    a dead-letter topic ``orders.dlq`` is ``<prefix>:{orders}.dlq`` and its own
    dead-letter topic ``orders.dlq.dlq`` is ``<prefix>:{orders}.dlq.dlq``, all in the
    slot of ``orders``, so that dead-lettering is one atomic script even on a cluster.
    """

    prefix: str

    def topic(self, topic: str, *parts: str) -> str:
        """The key of ``topic``, or of one of its parts (``processing``, ``dlq``...)."""
        tag, suffix = split_dead_letter(topic)
        key = f"{self.prefix}:{{{tag}}}{suffix}"
        return ":".join((key, *parts)) if parts else key

    def scan_pattern(self) -> str:
        """A SCAN MATCH pattern for every key of every topic under the prefix."""
        escaped = "".join(f"\\{c}" if c in "*?[]\\" else c for c in self.prefix)
        return f"{escaped}:{{*"

    def topic_of(self, key: str) -> str | None:
        """The topic a key belongs to (``orders.dlq`` for ``<prefix>:{orders}.dlq``),
        or None for a key that is not a topic's."""
        head = f"{self.prefix}:{{"
        close = key.find("}", len(head))
        if not key.startswith(head) or close < 0:
            return None
        tag = key[len(head) : close]
        if key.startswith(DEAD_LETTER_SUFFIX, close + 1):
            return tag + DEAD_LETTER_SUFFIX
        return tag
