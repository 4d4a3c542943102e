"""Binding again, from the reading side, the queues a broker's subscriptions read.

Deleting an exchange deletes its bindings. Whoever declares it anew binds the queues
it knows of: a publish of any broker that finds it gone binds the topic's default
queue and the groups *its* broker declared, a subscribe its own group's. A group
whose broker did neither (another broker redeclared the exchange first, or its
process only consumes and never publishes) stayed unbound, and its subscription
missed every message from then on without being told.

``queue.bind`` of a binding that exists changes nothing, so the reaper binds again
the queue of every live subscription of its broker to its topic's exchange, at its
first sweep once :data:`REBIND_INTERVAL` seconds have passed since the last round
(a sweep comes at least every second), and at its next sweep after the reading
connection was renewed or a subscription's channel opened anew. A missing exchange
is not declared here (that is a publish's or a subscribe's to do, with the topic's
default queue), nor is a missing queue (its subscription's next receive says so):
either is skipped, and bound at a later round once it is back.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import amqp.exceptions  # type: ignore[import-untyped]

from brokerkit.backends.kombu._link import Link
from brokerkit.backends.kombu._reader import Reader
from brokerkit.exceptions import BrokerError

__all__ = ["REBIND_INTERVAL", "Rebinder"]

#: How long after a round of binding again (one ``queue.bind`` a live subscription, on
#: a channel of its own) the next is due: a group left unbound by someone else's
#: redeclare of its exchange misses what is published for about that long (and up to
#: a sweep's interval more).
REBIND_INTERVAL = 2.0


class Rebinder:
    """Binds again the queues of a broker's live subscriptions (see the module)."""

    def __init__(self, interval: float = REBIND_INTERVAL) -> None:
        self.interval = interval
        #: When the next round is due (monotonic), whatever changes.
        self._due = 0.0
        #: What the last round saw: the connection, and each reader's channel.
        self._seen: object = None
        #: How many rounds ran (tests wait on it).
        self.rounds = 0

    def sweep(self, link: Link, readers: Iterable[Reader]) -> None:
        """Bind again, over ``link`` (the reading one), the queues of ``readers`` not
        retiring, if a round is due (call from the reaper, holding no lock). Gives up
        the round, without reconnecting, if the connection is lost: its next receive
        reconnects, and the round after that binds."""
        live = [r for r in readers if not r.retiring]
        seen = (link.generation, frozenset((id(r), id(r.channel)) for r in live))
        now = time.monotonic()
        if now < self._due and seen == self._seen:
            return
        wanted = sorted({(r.queue, link.names.exchange(r.subscription.topic)) for r in live})

        def bind() -> None:
            channel = link.channel()  # (its own: a missing name closes it)
            try:
                for queue, exchange in wanted:
                    try:
                        channel.queue_bind(queue, exchange)
                    except amqp.exceptions.ChannelError:
                        # (gone, or refused: py-amqp reopened the channel in place)
                        if not channel.is_open:
                            channel = link.channel()
            finally:
                if channel.is_open:
                    channel.close()

        if wanted:
            try:
                link.call(bind, reconnect=False)
            except BrokerError:
                return  # (lost: the next round, once a receive has reconnected)
        self._seen, self._due = seen, now + self.interval
        self.rounds += 1
