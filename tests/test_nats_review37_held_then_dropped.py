"""NATS: a delivery of the broker's first fetch, held across a renewal round and then
let go of unsettled, comes back while the broker stays open (review 37c).

The ordinary case of a handler that works longer than a quarter of AckWait and then
fails. Two things kept such a delivery alive, and so renewed for ever (another member
of the group never got it): the renewal loop's variable held the last delivery it
looked at while it waited for the next round (bd56aee), and, under asyncio, the
renewer task copied the first fetch's context, whose ``Fetching.tasks`` held the
finished fetch task and its result (5e9d917). Here the delivery is seen renewed while
held, then dropped: it is freed with its last reference, and the other member gets it
at attempt 2.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable

import brokerkit
import brokerkit.aio
from brokerkit.backends.nats._leases import Lease
from tests.waiting import wait_until, wait_until_async

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 30.0
#: The group's AckWait: renewed every quarter of it; a let-go delivery comes back after it.
_VISIBILITY = 2
#: How long the other member asks: the message comes within one AckWait of the drop;
#: a bound, not a pace (before the fixes it never came).
_ASK = 4 * _VISIBILITY


def _renewed(lease: Lease) -> Callable[[], bool]:
    """Whether a renewal round renewed ``lease`` since this was called (its deadline
    moved on: the first fetch's own renewal set it before it returned)."""
    before = lease.deadline
    return lambda: lease.deadline > before


def test_sync_first_fetchs_delivery_held_across_a_round_then_dropped_comes_back(
    nats_url: str, nats_prefix: str
) -> None:
    with (
        brokerkit.connect(nats_url, prefix=nats_prefix, visibility_timeout=_VISIBILITY) as broker,
        brokerkit.connect(nats_url, prefix=nats_prefix, visibility_timeout=_VISIBILITY) as other,
    ):
        taker = other.subscribe("jobs", group="g")  # (the group made: the message waits)
        broker.publish("jobs", "dropped")
        refs: list[weakref.ref[object]] = []
        try:  # (what the exception's traceback holds is let go with it)
            for delivery in broker.consume("jobs", group="g", timeout=GUARD):
                refs.append(weakref.ref(delivery))
                [lease] = broker._nats._leases.values()
                renewed = _renewed(lease)
                # The handler works while a renewal round renews its lease, then fails.
                wait_until(renewed, "a renewal round while the delivery is held", GUARD)
                del renewed, lease
                raise ValueError("handler failed")
        except ValueError:
            pass
        del delivery
        [ref] = refs
        # Freed with its last reference: no pass of the collector is needed.
        assert ref() is None, "the broker keeps the delivery let go of alive"

        again = taker.receive(timeout=_ASK)
        assert again is not None, "the delivery let go of never came back"
        assert (again.body, again.attempt) == ("dropped", 2)
        again.ack()
        assert not broker.closed
        wait_until(lambda: not broker._nats._leases, "the lease let go", GUARD)
        taker.close()


def test_async_first_fetchs_delivery_held_across_a_round_then_dropped_comes_back(
    nats_url: str, nats_prefix: str
) -> None:
    async def main() -> None:
        async with (
            brokerkit.aio.connect(
                nats_url, prefix=nats_prefix, visibility_timeout=_VISIBILITY
            ) as broker,
            brokerkit.aio.connect(
                nats_url, prefix=nats_prefix, visibility_timeout=_VISIBILITY
            ) as other,
        ):
            taker = await other.subscribe("jobs", group="g")
            subscription = await broker.subscribe("jobs", group="g", prefetch=1)
            await broker.publish("jobs", "dropped")
            delivery = await subscription.receive(timeout=GUARD)  # (its first fetch)
            assert delivery is not None and delivery.body == "dropped"
            ref = weakref.ref(delivery)
            [lease] = broker._leases.values()
            renewed = _renewed(lease)
            # The handler works while a renewal round renews its lease, then gives up.
            await wait_until_async(renewed, "a renewal round while the delivery is held", GUARD)
            del renewed, lease, delivery
            # Freed with its last reference: no pass of the collector is needed.
            assert ref() is None, "the broker keeps the delivery let go of alive"

            again = await taker.receive(timeout=_ASK)
            assert again is not None, "the delivery let go of never came back"
            assert (again.body, again.attempt) == ("dropped", 2)
            await again.ack()
            assert not broker.closed
            await wait_until_async(lambda: not broker._leases, "the lease let go", GUARD)
            await subscription.close()
            await taker.close()

    asyncio.run(main())
