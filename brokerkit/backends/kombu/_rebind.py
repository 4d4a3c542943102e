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

The rounds use one channel of their own, kept from round to round (opened anew only
once closed, or with a new connection). A pair (queue, exchange) RabbitMQ refuses
(NOT_FOUND: either is gone; it closes the channel, which py-amqp reopens in place, and
logs an error) is tried again only after :data:`REBIND_INTERVAL` seconds, then twice as
long after each refusal, up to :data:`MAX_BACKOFF`, so that a name gone for good does
not fill the server's log; one bound (or a new connection) starts afresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import amqp.exceptions  # type: ignore[import-untyped]

from brokerkit.backends.kombu._link import Link
from brokerkit.backends.kombu._reader import Reader
from brokerkit.exceptions import BrokerError

__all__ = ["MAX_BACKOFF", "REBIND_INTERVAL", "Rebinder"]

#: How long after a round of binding again (one ``queue.bind`` a live subscription, on
#: a channel of its own) the next is due: a group left unbound by someone else's
#: redeclare of its exchange misses what is published for about that long (and up to
#: a sweep's interval more).
REBIND_INTERVAL = 2.0
#: The longest a pair refused again and again waits for its next try.
MAX_BACKOFF = 60.0


class Rebinder:
    """Binds again the queues of a broker's live subscriptions (see the module)."""

    def __init__(self, interval: float = REBIND_INTERVAL) -> None:
        self.interval = interval
        #: The time the rounds go by (tests drive it).
        self.clock: Callable[[], float] = time.monotonic
        #: When the next round is due, whatever changes.
        self._due = 0.0
        #: What the last round saw: the connection, and each reader's channel.
        self._seen: object = None
        #: The rounds' channel, and the link generation it belongs to.
        self._channel: Any = None
        self._generation = -1
        #: Each pair refused: when it may be tried again, and how long it waited.
        self._backoff: dict[tuple[str, str], tuple[float, float]] = {}
        #: How many rounds ran (tests wait on it).
        self.rounds = 0

    def sweep(self, link: Link, readers: Iterable[Reader]) -> None:
        """Bind again, over ``link`` (the reading one), the queues of ``readers`` not
        retiring, if a round is due (call from the reaper, holding no lock). Gives up
        the round, without reconnecting, if the connection is lost: its next receive
        reconnects, and the round after that binds."""
        live = [r for r in readers if not r.retiring]
        seen = (link.generation, frozenset((id(r), id(r.channel)) for r in live))
        now = self.clock()
        if link.generation != self._generation:
            self._backoff = {}  # (a new connection: every pair afresh)
        if now < self._due and seen == self._seen:
            return
        wanted = {(r.queue, link.names.exchange(r.subscription.topic)) for r in live}
        self._backoff = {k: v for k, v in self._backoff.items() if k in wanted}
        due = sorted(p for p in wanted if self._backoff.get(p, (now, 0.0))[0] <= now)
        if due:
            try:
                link.call(lambda: self._bind(link, due, now), reconnect=False)
            except BrokerError:
                return  # (lost: the next round, once a receive has reconnected)
        self._seen, self._due = seen, now + self.interval
        self.rounds += 1

    def _bind(self, link: Link, pairs: list[tuple[str, str]], now: float) -> None:
        """Bind ``pairs`` over the rounds' channel (under the link's lock)."""
        if self._generation != link.generation:
            self._channel = None  # (of a connection gone)
        for pair in pairs:
            if self._channel is None or not self._channel.is_open:
                self._channel, self._generation = link.channel(), link.generation
            try:
                self._channel.queue_bind(*pair)
            except amqp.exceptions.ChannelError:
                # (gone, or refused: py-amqp reopened the channel in place)
                waited = self._backoff.get(pair, (now, 0.0))[1]
                wait = min(max(waited * 2, REBIND_INTERVAL), MAX_BACKOFF)
                self._backoff[pair] = (now + wait, wait)
            else:
                self._backoff.pop(pair, None)
