"""A gap in a pub/sub subscription's listening, as it is reported to the application."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Gap"]


@dataclass(frozen=True)
class Gap:
    """A stretch of time when a subscription was not listening.

    Redis Pub/Sub keeps nothing: a message published to the subscription's
    channels between :attr:`lost_at` and :attr:`resumed_at` may be lost for this
    subscriber (those that reached its socket before the connection broke were
    delivered); one published before :attr:`lost_at`, or after :attr:`resumed_at`,
    was not lost to this gap. An application that must not miss messages resyncs
    from its source of truth when it learns of a gap, or uses ``redis+stream``.

    :ivar topic: the subscription's topic, or its pattern when :attr:`pattern` is true.
    :ivar pattern: whether :attr:`topic` is a glob pattern.
    :ivar consumer: the subscription's consumer name.
    :ivar number: 1 for the subscription's first gap, 2 for its second, ...
    :ivar lost_at: the last time the subscription heard from Redis before the loss
        (``time.time()``): a message, or the answer to a PING. The connection broke
        somewhere between this and :attr:`noticed_at`.
    :ivar resumed_at: when the subscription was confirmed again (``time.time()``).
    :ivar reason: what ended the connection, as the driver reported it.
    :ivar noticed_at: when a read found the connection broken (``time.time()``);
        the subscription notices a loss only while it is being read.
    """

    topic: str
    pattern: bool
    consumer: str
    number: int
    lost_at: float
    resumed_at: float
    reason: str
    noticed_at: float = 0.0

    @property
    def duration(self) -> float:
        """Seconds between :attr:`lost_at` and :attr:`resumed_at`: the window in which a
        message published may have been lost."""
        return self.resumed_at - self.lost_at
