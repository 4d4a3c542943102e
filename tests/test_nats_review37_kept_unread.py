"""NATS: what a cut-off receive's fetch brought is kept for the subscription's next
receive for one AckWait at most (review 37c, B).

372df55 keeps what a receive cut off while it fetched brought on the subscription's
reader, renewed, for its next receive (no ``-NAK``, no attempt counted). Renewed for as
long as the subscription was open, it was held from every other member of the group
if nothing read the subscription again: a member asking for 4 AckWaits got nothing
(before 372df55 it was handed back, and got it at once). Now a kept delivery no
receive took within one AckWait (counted from when it was kept, or from the
subscription's last read) is renewed no more: the message comes again after AckWait,
to any member. A receive within that window still gets it on its first attempt, and
renewed from then on as any delivery it holds.

The fetch is held on the loop by a seam (:class:`HeldAsyncNatsBroker`: the real fetch
has run, and leased the message, and is held before it returns until the test lets
it), so that the receive is cut off while it is under way.
"""

from __future__ import annotations

import asyncio

import pytest

import brokerkit.aio
from brokerkit.backends.nats.broker import AsyncNatsBroker
from tests.interrupting import Gate, HeldFetch
from tests.waiting import wait_until_async

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 30.0
#: The group's AckWait.
_VISIBILITY = 2
#: How long the other member asks: a kept delivery nobody takes comes again within
#: about two AckWaits (kept one, then its last renewal runs out); a bound, not a pace
#: (before the fix it never came while the first subscription stayed open).
_ASK = 5 * _VISIBILITY


class HeldAsyncNatsBroker(HeldFetch, AsyncNatsBroker):
    """The asyncio NATS broker whose fetch passes the test's :class:`Gate` (if it set
    one) before it returns: a seam, the real fetch has run."""


async def _cut_off_receive(
    broker: HeldAsyncNatsBroker, publisher: brokerkit.aio.AsyncBroker
) -> brokerkit.aio.AsyncSubscription:
    """A subscription whose receive was cancelled while its fetch, which leased "the
    one", was held; the fetch then let go, and has ended: "the one" is kept."""
    subscription = await broker.subscribe("jobs", group="g")
    await publisher.publish("jobs", "the one")
    gate = broker.gate = Gate()
    receive = asyncio.ensure_future(subscription.receive(timeout=GUARD))
    assert await asyncio.to_thread(gate.entered.wait, GUARD)
    assert broker._leases  # (leased by the fetch)
    receive.cancel()
    with pytest.raises(asyncio.CancelledError):
        await receive
    gate.open()
    await wait_until_async(lambda: not subscription._orphans, "the fetch left running", GUARD)
    assert len(subscription.state.kept) == 1
    return subscription


def test_a_kept_delivery_nobody_receives_comes_to_another_member(
    nats_url: str, nats_prefix: str
) -> None:
    """pinned.py (review 37c): the subscription stays open and is never read again."""

    async def main() -> None:
        broker = HeldAsyncNatsBroker.from_url(
            nats_url, prefix=nats_prefix, visibility_timeout=_VISIBILITY
        )
        async with (
            broker,
            brokerkit.aio.connect(
                nats_url, prefix=nats_prefix, visibility_timeout=_VISIBILITY
            ) as other,
        ):
            subscription = await _cut_off_receive(broker, other)
            taker = await other.subscribe("jobs", group="g")
            delivery = await taker.receive(timeout=_ASK)
            assert delivery is not None, "the kept delivery was held from the other member"
            assert (delivery.body, delivery.attempt) == ("the one", 2)
            await delivery.ack()
            assert not subscription.closed
            await wait_until_async(lambda: not broker._leases, "the kept lease let go", GUARD)
            # Its own next receive finds the kept one let go, and nothing else.
            assert await subscription.receive(timeout=0) is None
            info = (await other.inspect("jobs")).groups[0]
            assert (info.lag, info.pending) == (0, 0)
            await subscription.close()
            await taker.close()

    asyncio.run(main())


def test_a_receive_within_the_window_gets_it_first_and_holds_it_renewed(
    nats_url: str, nats_prefix: str
) -> None:
    async def main() -> None:
        broker = HeldAsyncNatsBroker.from_url(
            nats_url, prefix=nats_prefix, visibility_timeout=_VISIBILITY, max_deliveries=1
        )
        async with (
            broker,
            brokerkit.aio.connect(
                nats_url, prefix=nats_prefix, visibility_timeout=_VISIBILITY
            ) as other,
        ):
            subscription = await _cut_off_receive(broker, other)
            [lease] = broker._leases.values()
            kept_until = lease.kept_until
            assert kept_until is not None
            delivery = await subscription.receive(timeout=GUARD)
            assert delivery is not None, "the message a cancelled receive fetched was lost"
            assert (delivery.body, delivery.attempt) == ("the one", 1)
            # Taken, it is renewed while held, past the window it was kept for.
            await wait_until_async(
                lambda: lease.deadline > kept_until + lease.ack_wait,
                "a renewal after the window it was kept for",
                GUARD,
            )
            await delivery.ack()  # (its lease held: no StaleDelivery)
            assert (await other.inspect("jobs.dlq")).length == 0
            info = (await other.inspect("jobs")).groups[0]
            assert (info.lag, info.pending) == (0, 0)
            await subscription.close()

    asyncio.run(main())
