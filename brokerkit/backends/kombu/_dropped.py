"""The deliveries kombu+amqp drops from its subscriptions' buffers, fetched but not
handed out yet, once their lease is known gone: with their channel (a lost
connection, a channel RabbitMQ closed), which gave them back to the queue, or run out
(the reaper gave them back). Handed out, each would be processed, refused on its
settle (StaleDelivery) and delivered again: processed twice.

They are dropped as soon as the loss is found, by the thread that finds it, while it
holds the connection's lock: so no receive hands one out after that. Telling the
application (a warning on ``brokerkit.kombu``, ``brokerkit_on_lease_lost`` once per
delivery) runs plugin code and log handlers, which must not hold up the connection:
it waits for :meth:`DroppedBuffers.report`, which the broker calls holding no lock of
its own: after each fetch, after an ack, nack or extend that found a loss, at each
sweep of the reaper, and at close.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from brokerkit._hooks import RELAY
from brokerkit._logging import subscription_fields
from brokerkit.backends.kombu._link import Link
from brokerkit.backends.kombu._reader import Reader

__all__ = ["DroppedBuffers"]

log = logging.getLogger("brokerkit.kombu")

_WHY = {
    "connection": "the connection to {server} was lost",
    "channel": "RabbitMQ on {server} closed their channel",
    None: "their lease ran out (the reaper handed them back)",
}


class DroppedBuffers:
    """Drops void deliveries from subscriptions' buffers, and reports them later."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: (the deliveries, of one subscription; the cause, in words)
        self._unreported: list[tuple[list[Any], str]] = []

    def drop(self, readers: Iterable[Reader], link: Link) -> None:
        """Take out of the buffers of ``readers``' subscriptions every delivery whose
        lease the reader no longer holds (see :meth:`Reader.forget_buffered`): marked
        settled, never handed out. Any thread, with ``link``'s lock or without it; runs
        no plugin code and logs nothing (:meth:`report` does)."""
        for reader in readers:
            taken, why = reader.forget_buffered(link)
            if taken:
                cause = _WHY[why].format(server=link.url.render())
                with self._lock:
                    self._unreported.append((taken, cause))

    def report(self) -> None:
        """Warn of the deliveries dropped since the last report, and tell
        ``brokerkit_on_lease_lost`` of each (once). Call holding no lock of the
        broker's: plugins and log handlers run here."""
        if not self._unreported:
            return
        with self._lock:
            unreported, self._unreported = self._unreported, []
        for deliveries, cause in unreported:
            # (the application's subscription: under brokerkit.aio, the asyncio one)
            subscription = deliveries[0].subscription
            log.warning(
                "dropped %d delivery(ies) %r had fetched but not handed out yet: %s; "
                "RabbitMQ delivers them again",
                len(deliveries),
                subscription,
                cause,
                extra=subscription_fields(subscription, deliveries),
            )
            RELAY.lease_lost(deliveries)
