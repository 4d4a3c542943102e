"""Rescues refused for a dead-letter key of another type, which a consumer's fetches go
on past (no I/O: the sync and the asyncio broker both use it)."""

from __future__ import annotations

import logging

from brokerkit._logging import log_fields

__all__ = ["RefusedRescues"]

log = logging.getLogger("brokerkit.redis")


class RefusedRescues:
    """The subscriptions whose maintenance found its rescue refused because the topic's
    dead-letter key holds another type (a rescue that would dead-letter a message hands
    nothing back, see RESCUE): their fetches go on, and the refusal is logged once per
    subscription until one of its rescues goes through again."""

    def __init__(self) -> None:
        self._refused: set[tuple[str, str]] = set()

    def refused(self, error: Exception, topic: str, consumer: str, dead_letters: str) -> bool:
        """Whether ``error`` (an :class:`IncompatibleTopic` of ``consumer``'s rescue) is
        that refusal: it names the ``dead_letters`` key. Logs a WARNING the first time."""
        if repr(dead_letters) not in str(error):
            return False
        if (topic, consumer) not in self._refused:
            self._refused.add((topic, consumer))
            log.warning(
                "redis+list: the rescue of topic %r hands nothing back while the dead-letter "
                "key %r holds another type than a list (%s); consumers go on fetching, and "
                "the expired leases stay leased until that key is deleted or made a list",
                topic,
                dead_letters,
                error,
                extra=log_fields(topic, consumer=consumer),
            )
        return True

    def cleared(self, topic: str, consumer: str) -> None:
        """``consumer``'s rescue went through: logged (INFO) if it was refused before."""
        if (topic, consumer) in self._refused:
            self._refused.discard((topic, consumer))
            log.info(
                "redis+list: the rescue of topic %r goes through again",
                topic,
                extra=log_fields(topic, consumer=consumer),
            )

    def forget(self, topic: str, consumer: str) -> None:
        """``consumer`` unsubscribed."""
        self._refused.discard((topic, consumer))
