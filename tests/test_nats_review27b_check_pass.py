"""NATS: the renewals' AckWait check takes the leases held by group once, however
many groups it asks (review 27b).

The check asked each group's consumer, then counted each group's answer with a walk
over every lease the broker held: groups x leases each quarter of AckWait, on the
event loop (1,000 groups of 20 leases: 3.4 s a check, against 1 s before the check
learnt to tell a consumer made again). It now takes the leases by group in one walk.
The walks are counted here (on a real server), not timed.
"""

from __future__ import annotations

from collections.abc import Callable, ItemsView
from typing import Any

from brokerkit.backends.nats._leases import Lease, Leases
from tests.nats_server import nats
from tests.waiting import wait_until

__all__ = ["nats"]  # a fixture

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 15.0
_GROUPS = 4


class _CountedLeases(Leases):
    """The broker's leases, counting the walks over all of them (``items()``)."""

    walks = 0

    def items(self) -> ItemsView[str, Lease]:
        type(self).walks += 1
        return super().items()


def test_one_ack_wait_check_walks_the_leases_held_once(nats: Callable[..., Any]) -> None:
    broker = nats(visibility_timeout=120)  # (no renewal round but the first within)
    subscriptions = [broker.subscribe("jobs", group=f"g{n}") for n in range(_GROUPS)]
    broker.publish("jobs", "x")
    held = [subscription.receive(timeout=GUARD) for subscription in subscriptions]
    assert all(held)
    leases = broker.inner._leases
    # The renewals' first check done, they wait for their next round (none within).
    wait_until(lambda: leases._shorter is not None, "the renewals' first check", GUARD)
    leases.__class__ = _CountedLeases  # (the same object: only items() is counted)
    found = broker._run(leases.check_ack_waits())
    assert len(found) == _GROUPS
    assert _CountedLeases.walks == 1, f"{_CountedLeases.walks} walks over the leases"
    for delivery in held:
        delivery.ack()
