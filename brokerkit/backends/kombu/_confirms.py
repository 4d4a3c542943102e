"""Publisher confirms: which publishes of one channel RabbitMQ has confirmed, refused
or returned unroutable (:mod:`._link` opens the publisher channel and listens for them,
:mod:`._publish` waits for them)."""

from __future__ import annotations

from typing import Any

__all__ = ["Confirms"]


class Confirms:
    """Publisher confirms of one channel, recorded as they arrive.

    They are recorded by listeners rather than awaited one by one, because py-amqp
    reads (and dispatches) pending frames whenever it publishes: a confirm can arrive
    before anyone waits for it.
    """

    def __init__(self) -> None:
        self._count = 0
        self._pending: set[int] = set()
        self._refused: set[int] = set()
        #: The ids of messages RabbitMQ returned (``basic.return``): published
        #: ``mandatory``, they reached no queue (it comes before their confirm).
        self._returned: list[str] = []

    def published(self, count: int) -> range:
        """Note ``count`` publishes (RabbitMQ numbers them from 1 per channel); return
        their tags."""
        tags = range(self._count + 1, self._count + count + 1)
        self._count += count
        self._pending.update(tags)
        return tags

    def waiting(self, tags: range) -> bool:
        """Whether any of ``tags`` is not confirmed yet."""
        return any(tag in self._pending for tag in tags)

    def unsettled(self, tags: range) -> set[int]:
        """The ``tags`` RabbitMQ has not confirmed yet, or refused (``basic.nack``):
        none of those is known stored (one not confirmed yet may be)."""
        return {tag for tag in tags if tag in self._pending or tag in self._refused}

    def refused(self, tags: range) -> list[int]:
        """The ``tags`` RabbitMQ refused (``basic.nack``); forgets them."""
        refused = [tag for tag in tags if tag in self._refused]
        self._refused.difference_update(refused)
        return refused

    def take_returned(self) -> set[str]:
        """The ids of the messages returned since the last call; forgets them."""
        returned, self._returned = set(self._returned), []
        return returned

    def returned(self, exc: Any, exchange: str, routing_key: str, message: Any) -> None:
        """py-amqp's ``basic_return`` event: RabbitMQ routed a message to no queue."""
        message_id = getattr(message, "properties", {}).get("message_id")
        self._returned.append(message_id if isinstance(message_id, str) else "")

    def acked(self, tag: int, multiple: bool) -> None:
        self._settle(tag, multiple)

    def nacked(self, tag: int, multiple: bool) -> None:
        self._refused.update(self._settle(tag, multiple))

    def _settle(self, tag: int, multiple: bool) -> set[int]:
        done = {t for t in self._pending if t <= tag} if multiple else {tag} & self._pending
        self._pending -= done
        return done
