"""NATS: a delivery the application lets go of unsettled comes back after AckWait while
its broker stays open (review 37, bug 1).

A handler's exception inside ``for`` / ``async for`` is the ordinary case: the loop
ends, nothing holds the delivery any more, and docs/concepts.md promises that an
unsettled delivery comes back after the visibility timeout. The broker's lease
bookkeeping held every delivery it handed out strongly, and its renewals renewed
the lease (``+WPI``) for as long as the broker was open: another consumer never got
the message (``in_flight`` 1) until the first broker closed. The broker now holds the
delivery weakly: once collected, its lease is no longer renewed, and the message
comes again within one AckWait. A delivery the application still holds is renewed
as before: it is acked after the other one came back (later than its AckWait would
have let it, unrenewed).
"""

from __future__ import annotations

import asyncio
import gc
import weakref

import brokerkit
import brokerkit.aio
from tests.waiting import wait_until, wait_until_async

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 30.0
#: The group's AckWait: a let-go delivery comes back after it. Both brokers ask for it
#: (a group made or asked again with another visibility timeout is another group's
#: AckWait), and it is long enough that the held delivery's renewals (every quarter of
#: it) keep it on a loaded machine.
_VISIBILITY = 6


def _collected(ref: weakref.ref[object]) -> bool:
    gc.collect()
    return ref() is None


def test_an_async_for_loop_a_handler_broke_out_of_lets_its_delivery_come_back(
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
            subscription = await broker.subscribe("jobs", group="g", prefetch=1)
            await broker.publish_many("jobs", ["held", "dropped"])
            held = await subscription.receive(timeout=GUARD)
            assert held is not None and held.body == "held"

            async def handle(delivery: brokerkit.aio.AsyncDelivery) -> None:
                raise ValueError("handler failed")

            refs: list[weakref.ref[object]] = []
            try:  # (what the exception's traceback holds is let go with it)
                async for delivery in subscription:
                    refs.append(weakref.ref(delivery))
                    await handle(delivery)
            except ValueError:
                pass
            del delivery
            [ref] = refs
            # (the loop's generator is closed on the event loop: looked at until then)
            await wait_until_async(
                lambda: _collected(ref), "the delivery let go to be collected", GUARD
            )

            taker = await other.subscribe("jobs", group="g")
            again = await taker.receive(timeout=GUARD)
            assert again is not None, "the delivery let go of never came back"
            assert (again.body, again.attempt) == ("dropped", 2)
            await again.ack()
            # Still held by the application: renewed all along (unrenewed, its lease
            # would have run out before the other one's, fetched after it, came back).
            await held.ack()
            await wait_until_async(lambda: not broker._leases, "the leases let go", GUARD)
            info = (await other.inspect("jobs")).groups[0]
            assert (info.lag, info.pending) == (0, 0)
            await subscription.close()

    asyncio.run(main())


def test_a_for_loop_over_consume_a_handler_broke_out_of_lets_its_delivery_come_back(
    nats_url: str, nats_prefix: str
) -> None:
    """The audit's repro, under the sync API (the lease names the sync delivery)."""
    with (
        brokerkit.connect(nats_url, prefix=nats_prefix, visibility_timeout=_VISIBILITY) as broker,
        brokerkit.connect(nats_url, prefix=nats_prefix, visibility_timeout=_VISIBILITY) as other,
    ):
        keeper = broker.subscribe("jobs", group="g", prefetch=1)
        broker.publish_many("jobs", ["held", "dropped"])
        held = keeper.receive(timeout=GUARD)
        assert held is not None and held.body == "held"
        refs: list[weakref.ref[object]] = []
        try:  # (what the exception's traceback holds is let go with it)
            for delivery in broker.consume("jobs", group="g", timeout=GUARD):
                refs.append(weakref.ref(delivery))
                raise ValueError("handler failed")
        except ValueError:
            pass
        del delivery
        [ref] = refs
        assert _collected(ref), "the broker keeps the delivery let go of alive"

        again = other.subscribe("jobs", group="g").receive(timeout=GUARD)
        assert again is not None, "the delivery let go of never came back"
        assert (again.body, again.attempt) == ("dropped", 2)
        again.ack()
        held.ack()  # (renewed all along: see the asyncio test)
        wait_until(lambda: not broker._nats._leases, "the leases let go", GUARD)
        info = other.inspect("jobs").groups[0]
        assert (info.lag, info.pending) == (0, 0)
        keeper.close()
