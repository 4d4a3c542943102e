"""NATS: the background renewals keep every lease a broker holds, whatever the ack
waits of its groups (review 26, bugs 3 and 4).

A broker renews what it holds every quarter of the shortest AckWait of its leases. It
used to count that quarter once, before it waited: a lease of a group with a shorter
AckWait that came during the wait (a broker holding a message of a group with AckWait
60 s, then reading one of a group with AckWait 2 s) was renewed 15 s later, long after
the server had given its message to another consumer; the holder's ack then raised
StaleDelivery.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
