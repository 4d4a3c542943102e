"""The channels a kombu+amqp :class:`~brokerkit.backends.kombu._link.Link` publishes
on: one under publisher confirms for publishes, one in transaction mode for dead
letters (see :func:`._transaction.send_transacted`), each opened at its first use on a
connection and dropped with it; a mixin of the link.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from brokerkit.backends.kombu._blocked import BlockedState
from brokerkit.backends.kombu._confirms import Confirms

__all__ = ["PublishingChannels"]


class PublishingChannels:
    """The publishing channels of a :class:`~brokerkit.backends.kombu._link.Link`
    (call under its lock)."""

    if TYPE_CHECKING:
        blocked: BlockedState
        _errors: tuple[type[BaseException], ...]

        def channel(self) -> Any: ...

    _publisher: Any = None
    #: The dead letters' channel, in transaction mode, and what RabbitMQ returned of
    #: it (see :meth:`transacted`).
    _transacted: tuple[Any, Confirms] | None = None
    #: The publisher channel's confirms.
    confirms: Confirms

    def publisher(self) -> Any:
        """The channel messages are published on, with publisher confirms on."""
        channel = self._publisher
        if channel is None or not channel.is_open:
            channel = self.channel()
            channel.confirm_select()
            self.confirms = Confirms()
            channel.events["basic_ack"].add(self.confirms.acked)
            channel.events["basic_nack"].add(self.confirms.nacked)
            channel.events["basic_return"].add(self.confirms.returned)
            self._publisher = channel
        return channel

    def transacted(self) -> tuple[Any, Confirms]:
        """The channel dead letters are published on, in transaction mode (committed
        only once RabbitMQ read them: see :func:`._transaction.send_transacted`), and the
        record of what it returned (``basic.return``)."""
        if self._transacted is None or not self._transacted[0].is_open:
            channel = self.channel()
            channel.tx_select()
            returns = Confirms()
            channel.events["basic_return"].add(returns.returned)
            self._transacted = (channel, returns)
        return self._transacted

    def forget_channels(self) -> None:
        """Forget both channels (their connection is gone): the next use opens new ones."""
        self._publisher = self._transacted = None

    def drop_publisher(self, cause: BaseException | None = None) -> None:
        """Close the publisher channel (a publish failed half way, for ``cause``); the
        next publish opens a new one. A connection error or a socket timeout only
        forgets it: the connection is lost (the call drops it), and the close's
        handshake would wait out the socket timeout on it once more. Nor on a
        connection RabbitMQ blocked: it reads nothing (the close-ok would not come
        before the alarm ends); the next call drops it. The dead letters' channel
        goes the same way."""
        channels = [self._publisher, self._transacted and self._transacted[0]]
        self.forget_channels()
        if isinstance(cause, self._errors) or self.blocked.reason is not None:
            return
        for channel in channels:
            if channel is not None and channel.is_open:
                # A dead connection cannot close it: the next call reconnects.
                with contextlib.suppress(*self._errors):
                    channel.close()
