"""The kombu+amqp broker's callbacks that drop from its subscriptions' buffers
what they fetched over a connection found lost (the reading link's
:attr:`~brokerkit.backends.kombu._link.Link.on_drop`) or a channel RabbitMQ closed
(a reader's :attr:`~brokerkit.backends.kombu._reader.Reader.on_server_close`),
holding the broker weakly; see :mod:`._dropped`."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from brokerkit.backends.kombu._link import Link
from brokerkit.backends.kombu._reader import Reader

if TYPE_CHECKING:
    from brokerkit.backends.kombu.amqp import KombuAMQPBroker


def _on_drop(ref: weakref.ref[KombuAMQPBroker], link: Link) -> Callable[[], None]:
    """The reading ``link``'s :attr:`~Link.on_drop`: it found its connection lost,
    and holds its lock still; drop from the subscriptions' buffers what they fetched
    from that connection, before any receive can hand it out (reported later, holding
    no lock). It holds the broker weakly (the links outlive a broker dropped
    unclosed, until its finalizer closes them); nothing is dropped once the broker is
    closing (its subscriptions hand back what they buffered)."""

    def dropped() -> None:
        broker = ref()
        if broker is None or broker._halting.is_set():
            return
        with broker._state_lock:
            readers = list(broker._readers)
        broker._dropped.drop(readers, link)

    return dropped


def _on_server_close(ref: weakref.ref[KombuAMQPBroker]) -> Callable[[Reader], None]:
    """A reader's :attr:`~Reader.on_server_close`: RabbitMQ closed its channel, and
    the call that read the close holds the reading link's lock still; drop from the
    subscription's buffer what it fetched on that channel, before any receive can hand
    it out (as :meth:`KombuAMQPBroker._reset` does; reported later, holding no lock).
    It holds the broker weakly, as :func:`_on_drop` does."""

    def closed(reader: Reader) -> None:
        broker = ref()
        link = None if broker is None else broker._reading_link
        if broker is None or link is None or broker._halting.is_set():
            return
        broker._dropped.drop([reader], link)

    return closed
