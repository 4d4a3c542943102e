"""A gap in a pub/sub subscription's listening, as it is reported to the application,
and how each broker calls ``on_gap``: :class:`GapReport` for the sync broker and
:class:`AsyncGapReport` for its asyncio source (``scripts/generate_sync.py`` maps the
one to the other by name)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from brokerkit._compat import is_async_callable
from brokerkit.exceptions import InvalidOption

__all__ = ["AsyncGapReport", "Gap", "GapReport"]


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


class GapReport:
    """``on_gap`` of the sync broker: a plain function, called in the consuming thread."""

    @staticmethod
    def check(on_gap: Callable[[Gap], Any] | None) -> None:
        """Refuse an ``async def`` ``on_gap``: no thread of the sync broker could
        await it, so it would never run.

        :raises InvalidOption: ``on_gap`` returns a coroutine when called."""
        if on_gap is not None and is_async_callable(on_gap):
            raise InvalidOption(
                "on_gap is an async def: the sync broker calls it in the consuming thread, "
                "where nothing awaits it (it would never run); pass a plain function, or "
                "connect with brokerkit.aio.connect, which awaits it"
            )

    @staticmethod
    def tell(on_gap: Callable[[Gap], Any], gap: Gap) -> None:
        """Call ``on_gap`` with ``gap``; what it raises comes out of the receive."""
        on_gap(gap)


class AsyncGapReport:
    """``on_gap`` of the asyncio broker: a plain function, or an ``async def``, which
    is awaited to its end before the receive that found the gap returns."""

    @staticmethod
    def check(on_gap: Callable[[Gap], Any] | None) -> None:
        """Either kind is accepted."""

    @staticmethod
    async def tell(on_gap: Callable[[Gap], Any], gap: Gap) -> None:
        """Call ``on_gap`` with ``gap``, and await what it returns if that is awaitable;
        what it raises comes out of the receive."""
        called = on_gap(gap)
        if inspect.isawaitable(called):
            await called
