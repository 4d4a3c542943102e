"""NATS: a group whose renewals go unanswered does not hold up the renewals of the
other groups (review 27b).

A round of the background renewals renewed every group at once and waited for them
all: a group whose ``+WPI`` went unanswered (a consumer that does not answer; here
its renewals never reach the server) held the round until that group's lease could
no longer be sent, near its end; meanwhile no other group was renewed, and their
leases, shorter, ran out: their messages went to other consumers, their acks raised
StaleDelivery. Each group's renewal now runs on its own; a group whose renewal of a
round before still waits is skipped until it ends.

The seam is on the broker's own nats-py connection (a real server): its publishes to
one group's ack subjects are swallowed before they are written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from brokerkit.backends.nats._wire import consumer_name
from tests.nats_server import nats
from tests.waiting import wait_until

__all__ = ["nats"]  # a fixture

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 15.0
#: The AckWait of the group that answers: renewed every half second.
_SHORT = 2
#: The AckWait of the group whose renewals go unanswered: its renewal is given up
#: near its end, long after the other group's leases would have run out.
_LONG = 60
#: Renewals of the group that answers to wait for: more than a whole _SHORT.
_RENEWALS = 6


def test_a_group_not_answering_renewals_does_not_cost_another_group_its_lease(
    nats: Callable[..., Any], nats_prefix: str
) -> None:
    # Each group's consumer is made with its own AckWait.
    nats(visibility_timeout=_LONG).subscribe("jobs", group="slow").close()
    nats(visibility_timeout=_SHORT).subscribe("jobs", group="quick").close()
    broker = nats(visibility_timeout=_SHORT)
    slow, quick = broker.subscribe("jobs", group="slow"), broker.subscribe("jobs", group="quick")
    broker.publish("jobs", "x")
    held_slow, held_quick = slow.receive(timeout=GUARD), quick.receive(timeout=GUARD)
    assert held_slow is not None and held_quick is not None
    quick_lease = held_quick.receipt.receipt  # (the asyncio delivery's)

    nc = broker._run(broker.inner._client.connection())
    swallowed = f"$JS.ACK.{nats_prefix}.{consumer_name('jobs', 'slow')}."
    renewed = f"$JS.ACK.{nats_prefix}.{consumer_name('jobs', 'quick')}."
    counts = {"swallowed": 0, "renewed": 0}
    publish = nc.publish

    async def seam(subject: str, payload: bytes = b"", reply: str = "", headers: Any = None) -> Any:
        if subject.startswith(swallowed):
            counts["swallowed"] += 1
            return None  # never reaches the server: never answered
        if subject.startswith(renewed) and payload == b"+WPI":
            counts["renewed"] += 1
        return await publish(subject, payload, reply=reply, headers=headers)

    nc.publish = seam
    try:
        wait_until(lambda: counts["swallowed"], "a renewal of the slow group", within=GUARD)
        since = counts["renewed"]
        lost = lambda: quick_lease.reply not in broker.inner._leases  # noqa: E731
        wait_until(
            lambda: counts["renewed"] >= since + _RENEWALS or lost(),
            "the quick group's renewals while the slow group's renewal waits",
            within=GUARD,
        )
        assert not lost(), "the quick group's lease ran out"
    finally:
        nc.publish = publish
    held_quick.ack()  # (StaleDelivery, had its lease run out)
