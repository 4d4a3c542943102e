"""How a kombu+amqp reader learns that RabbitMQ closed its channel on its own
(``consumer_timeout``; a settle of a delivery tag the channel does not know),
whichever call reads the close: :func:`_watch_close` notes it on the
:class:`~brokerkit.backends.kombu._reader.Reader`, and :func:`closed_on_its_own`
tells such a close, raised to the call that read it, from a refusal of that call's
own request."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import amqp.exceptions  # type: ignore[import-untyped]
from amqp import spec

if TYPE_CHECKING:
    from brokerkit.backends.kombu._reader import Reader

__all__ = ["closed_on_its_own"]

#: What a channel's close names as its cause when RabbitMQ closed it on its own, not
#: refusing a request of the call that reads it: no method (its ``consumer_timeout``),
#: or a settle sent on it before of a delivery tag it does not know (or no longer).
_ON_ITS_OWN = frozenset({(0, 0), spec.Basic.Ack, spec.Basic.Reject, spec.Basic.Nack})


def _watch_close(reader: Reader, channel: Any) -> None:
    """Note on ``reader`` (held weakly) that RabbitMQ closed ``channel`` on its own
    (``consumer_timeout``; an asynchronous refusal), whichever call reads the close.

    py-amqp answers a ``channel.close``, reopens the channel in place and raises the
    error from the drain that read it: the call waiting on this channel takes it as its
    own (it is raised to it, as before: a fetch then goes on over a new channel unless
    the close refused its own request, see :func:`closed_on_its_own`; a settle raises
    StaleDelivery), but another subscription's receive, or the
    reaper's heartbeat, read it for everyone: there it is only noted, and the
    reader drops the channel at its next use (:meth:`Reader.live_channel`, the reaper's
    sweep), rather than raised to a call it is no business of (which reset that call's
    own subscription, and left this one on the reopened channel). What the
    subscription buffered from the channel is dropped at once, either way
    (:attr:`Reader.on_server_close`), as the lock is still held: no receive hands one
    of them out after the close was read."""
    ref = weakref.ref(reader)
    original = channel._callbacks[spec.Channel.Close]

    def on_close(*args: Any) -> None:
        waited = bool(channel._pending)  # a call waits for an answer on this channel
        try:
            original(*args)
        except amqp.exceptions.ChannelError as exc:
            owner = ref()
            if owner is None or owner.channel is not channel:
                raise
            owner.closed_by_server = str(exc.reply_text or exc)
            if owner.on_server_close is not None:
                owner.on_server_close(owner)  # (its buffer: nothing hands it out now)
            if waited:
                raise

    channel._callbacks[spec.Channel.Close] = on_close


def closed_on_its_own(error: BaseException) -> bool:
    """Whether ``error``, raised by a :meth:`Link.call` on a reader's channel, is
    RabbitMQ's close of that channel on its own (see :data:`_ON_ITS_OWN`), read by the
    call because it waited for an answer on the channel: the call's own request was
    not refused (a queue deleted is), and the channel is lost as it is when another
    call reads the close (:func:`_watch_close`)."""
    cause = error.__cause__
    sig = getattr(cause, "method_sig", None)
    return isinstance(cause, amqp.exceptions.ChannelError) and sig in _ON_ITS_OWN
