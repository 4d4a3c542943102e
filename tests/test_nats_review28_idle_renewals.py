"""NATS: a broker that holds no lease has its renewals wait for one, not wake four
times a second (review 28).

The renewals waited a quarter of a second between rounds whenever the broker held
no lease (``next_round(idle=1.0)``): an idle broker (a worker between messages, a
publisher that once received) ran a round, and asked for the time of day, four
times a second for as long as it stayed open. Now they wait, untimed, for a lease
to come (or a lost one to report), and end at once with the close.

The rounds are counted (each begins with the AckWait check), on a real server.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from brokerkit.backends.nats._leases import GroupFound, Leases
from tests.nats_server import nats

__all__ = ["nats"]  # a fixture

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 15.0
#: The groups' AckWait (seconds): a round every half second while a lease is held.
_ACK_WAIT = 2.0
#: Seconds the idle broker is watched: six rounds' worth of the old idle wait, and
#: more than the quarter AckWait left of the round due when the last lease went.
_WATCH = 1.5


class _CountedLeases(Leases):
    """The broker's leases, counting the renewals' rounds (each asks the AckWaits)."""

    rounds = 0

    async def check_ack_waits(self) -> dict[str, GroupFound]:
        type(self).rounds += 1
        return await super().check_ack_waits()


def test_an_idle_broker_runs_no_renewal_round(nats: Callable[..., Any]) -> None:
    broker = nats(visibility_timeout=_ACK_WAIT)
    subscription = broker.subscribe("jobs", group="g")
    broker.publish("jobs", "first")
    first = subscription.receive(timeout=GUARD)
    assert first is not None
    leases = broker.inner._leases
    leases.__class__ = _CountedLeases  # (the same object: only the rounds are counted)
    first.ack()  # no lease held from now on
    assert not leases
    before = _CountedLeases.rounds
    time.sleep(_WATCH)  # a window watched, not a synchronisation
    idle = _CountedLeases.rounds - before
    # (the round already due, a quarter of AckWait after the one before, may run)
    assert idle <= 1, f"{idle} renewal rounds while the broker held no lease"

    # A lease that comes wakes them: it is renewed (no other consumer of the group
    # gets it past three of its AckWaits), and acked by its holder.
    rival = nats(visibility_timeout=_ACK_WAIT).subscribe("jobs", group="g")
    broker.publish("jobs", "second")
    second = subscription.receive(timeout=GUARD)
    assert second is not None
    assert rival.receive(timeout=3 * _ACK_WAIT) is None, "a lease held after idling was lost"
    second.ack()
    assert _CountedLeases.rounds > before

    renewer = broker.inner._renewer
    assert renewer is not None
    broker.close()  # (a hang here fails the test on its timeout)
    assert renewer.done()
