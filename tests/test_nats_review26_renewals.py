"""NATS: the background renewals keep every lease a broker holds, whatever the ack
waits of its groups (review 26, bugs 3 and 4).

A broker renews what it holds every quarter of the shortest AckWait of its leases. It
used to count that quarter once, before it waited: a lease of a group with a shorter
AckWait that came during the wait (a broker holding a message of a group with AckWait
60 s, then reading one of a group with AckWait 2 s) was renewed 15 s later, long after
the server had given its message to another consumer; the holder's ack then raised
StaleDelivery.

A group's AckWait is changed by deleting its consumer, for the next broker to make it
again with its own ``visibility_timeout``. A broker reading the group meanwhile used
to go on with the AckWait it read when it subscribed: it renewed too seldom, the
message went to another consumer while it held it, and its ack, late, was taken (no
StaleDelivery). The renewals now ask each group's AckWait again, every round.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import nats as nats_py

from brokerkit.backends.nats._wire import consumer_name
from tests.nats_server import nats

__all__ = ["nats"]  # a fixture

#: The short AckWait (seconds): renewed every half second.
_SHORT = 2.0
#: The long one: renewed every 15 s.
_LONG = 60.0


def test_a_lease_with_a_shorter_ack_wait_is_renewed_in_time(nats: Callable[..., Any]) -> None:
    rival = nats(visibility_timeout=_SHORT)
    watcher = rival.subscribe("fast", group="g")  # (makes the group: AckWait 2 s)
    broker = nats(visibility_timeout=_LONG)
    broker.publish("slow", "held long")
    held = broker.subscribe("slow", group="g").receive(timeout=5)  # AckWait 60 s
    assert held is not None
    fast = broker.subscribe("fast", group="g")
    broker.publish("fast", "held too")
    delivery = fast.receive(timeout=5)
    assert delivery is not None
    # Past three of its AckWaits, the group did not give it to another consumer...
    stolen = watcher.receive(timeout=3 * _SHORT)
    assert stolen is None, "a lease with a shorter AckWait was not renewed in time"
    delivery.ack()  # ... and its holder still holds it (no StaleDelivery)
    held.ack()


def _delete_consumer(url: str, stream: str, topic: str, group: str) -> None:
    async def delete() -> None:
        nc = await nats_py.connect(url)
        try:
            await nc.jetstream().delete_consumer(stream, consumer_name(topic, group))
        finally:
            await nc.close()

    asyncio.run(delete())


def test_a_group_made_again_with_a_shorter_ack_wait_is_renewed_with_it(
    nats: Callable[..., Any], nats_url: str, nats_prefix: str
) -> None:
    broker = nats(visibility_timeout=_LONG)
    subscription = broker.subscribe("jobs", group="g")  # (makes the group: AckWait 60 s)
    _delete_consumer(nats_url, nats_prefix, "jobs", "g")
    rival = nats(visibility_timeout=_SHORT)
    watcher = rival.subscribe("jobs", group="g")  # (makes it again: AckWait 2 s)
    broker.publish("jobs", "held")
    delivery = subscription.receive(timeout=5)
    assert delivery is not None
    stolen = watcher.receive(timeout=3 * _SHORT)
    assert stolen is None, "the holder renewed with the AckWait the group had before"
    delivery.ack()
    assert broker.subscribe("jobs", group="g").receive(timeout=0) is None
