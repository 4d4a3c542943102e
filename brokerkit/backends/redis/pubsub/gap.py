"""A gap in a pub/sub subscription's listening, as it is reported to the application."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Gap"]


@dataclass(frozen=True)
class Gap:
    """A stretch of time when a subscription was not listening.

    Redis Pub/Sub keeps nothing: every message published to the subscription's
    channels from (shortly before) :attr:`lost_at` until :attr:`resumed_at` is
    lost for this subscriber. An application that must not miss messages resyncs
    from its source of truth when it learns of a gap, or uses ``redis+stream``.

    :ivar topic: the subscription's topic, or its pattern when :attr:`pattern` is true.
    :ivar pattern: whether :attr:`topic` is a glob pattern.
    :ivar consumer: the subscription's consumer name.
    :ivar number: 1 for the subscription's first gap, 2 for its second, ...
    :ivar lost_at: when the loss was noticed (``time.time()``); Redis may have
        dropped the connection a little earlier.
    :ivar resumed_at: when the subscription was confirmed again (``time.time()``).
    :ivar reason: what ended the connection, as the driver reported it.
    """

    topic: str
    pattern: bool
    consumer: str
    number: int
    lost_at: float
    resumed_at: float
    reason: str

    @property
    def duration(self) -> float:
        """Seconds between :attr:`lost_at` and :attr:`resumed_at`."""
        return self.resumed_at - self.lost_at
