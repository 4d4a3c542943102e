"""NATS: what a receive cut off by a timeout (or a cancellation) had fetched goes to the
subscription's next receive, no attempt counted (review 37, bug 2).

``await asyncio.wait_for(subscription.receive(), 0.2)`` in a polling loop leaves the
receive's fetch running (docs/asyncio.md); a message that fetch brings after the
receive was cut off was handed back with ``-NAK``, which JetStream counts as a
delivery: every message of a producer slower than the poll came with attempt 2, and
with ``max_deliveries=1`` all were dead-lettered without the application ever seeing
them. The subscription's reader now keeps them for the next receive, first in line
(no ``-NAK``, nothing more pulled meanwhile), as redis+stream returns them uncounted;
its close hands back what is still kept.

The fetch is held on the loop by a seam (:class:`HeldAsyncNatsBroker`: the real fetch
has run, and leased the message, and is held before it returns until the test lets
it), so that the receive is cut off while it is under way.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.backends.nats.broker import AsyncNatsBroker
from brokerkit.backends.nats.sync import NatsBroker
from tests.interrupting import Gate, HeldFetch, gated, interrupted_receive
from tests.waiting import wait_until, wait_until_async

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 30.0
#: Long enough that a message comes back within a test only if it was handed back.
_VISIBILITY = 60


class HeldAsyncNatsBroker(HeldFetch, AsyncNatsBroker):
    """The asyncio NATS broker whose fetch passes the test's :class:`Gate` (if it set
    one) before it returns: a seam, the real fetch has run."""


class HeldNatsBroker(NatsBroker):
    async_class = HeldAsyncNatsBroker


async def _cut_off_receive(
    broker: HeldAsyncNatsBroker, publisher: brokerkit.aio.AsyncBroker
) -> brokerkit.aio.AsyncSubscription:
    """A subscription whose receive was cancelled while its fetch, which leased "the
    one", was held; the fetch then let go, and has ended."""
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
    return subscription


def test_the_next_receive_gets_what_a_cancelled_receive_fetched_on_its_first_attempt(
    nats_url: str, nats_prefix: str
) -> None:
    async def main() -> None:
        broker = HeldAsyncNatsBroker.from_url(
            nats_url, prefix=nats_prefix, visibility_timeout=_VISIBILITY, max_deliveries=1
        )
        async with broker, brokerkit.aio.connect(nats_url, prefix=nats_prefix) as publisher:
            subscription = await _cut_off_receive(broker, publisher)
            delivery = await subscription.receive(timeout=GUARD)
            assert delivery is not None, "the message a cancelled receive fetched was lost"
            assert (delivery.body, delivery.attempt) == ("the one", 1)
            await delivery.ack()
            assert await subscription.receive(timeout=0) is None  # (not twice)
            assert (await publisher.inspect("jobs.dlq")).length == 0
            info = (await publisher.inspect("jobs")).groups[0]
            assert (info.lag, info.pending) == (0, 0)
            await subscription.close()

    asyncio.run(main())


def test_closing_hands_back_what_a_cancelled_receive_fetched(
    nats_url: str, nats_prefix: str
) -> None:
    async def main() -> None:
        broker = HeldAsyncNatsBroker.from_url(
            nats_url, prefix=nats_prefix, visibility_timeout=_VISIBILITY
        )
        async with broker, brokerkit.aio.connect(nats_url, prefix=nats_prefix) as other:
            subscription = await _cut_off_receive(broker, other)
            await subscription.close()
            # None kept (renewed) by the broker, still open:
            await wait_until_async(lambda: not broker._leases, "the leases let go", GUARD)
            taker = await other.subscribe("jobs", group="g")
            delivery = await taker.receive(timeout=GUARD)
            assert delivery is not None, "the message a cancelled receive fetched was stranded"
            assert delivery.body == "the one"
            await delivery.ack()

    asyncio.run(main())


def test_a_polling_loop_with_wait_for_sees_every_message_once_in_order(
    nats_url: str, nats_prefix: str
) -> None:
    """The audit's loop: a receive cut off every 0.2 s, a message every 0.25 s."""

    async def main() -> None:
        async with (
            brokerkit.aio.connect(nats_url, prefix=nats_prefix, max_deliveries=1) as broker,
            brokerkit.aio.connect(nats_url, prefix=nats_prefix) as publisher,
        ):
            subscription = await broker.subscribe("jobs", group="g")

            async def produce() -> None:
                for number in range(10):
                    await asyncio.sleep(0.25)  # the producer's pace, not a synchronization
                    await publisher.publish("jobs", number)

            producing = asyncio.create_task(produce())
            got: list[tuple[int, int]] = []
            deadline = asyncio.get_running_loop().time() + GUARD
            while len(got) < 10 and asyncio.get_running_loop().time() < deadline:
                try:
                    delivery = await asyncio.wait_for(subscription.receive(), 0.2)
                except asyncio.TimeoutError:
                    continue
                if delivery is not None:
                    got.append((delivery.body, delivery.attempt))
                    await delivery.ack()
            await producing
            assert got == [(number, 1) for number in range(10)]
            assert (await publisher.inspect("jobs.dlq")).length == 0
            await subscription.close()

    asyncio.run(main())


@pytest.fixture
def held_broker(nats_url: str, nats_prefix: str) -> Iterator[HeldNatsBroker]:
    with gated(
        HeldNatsBroker.from_url(
            nats_url, prefix=nats_prefix, visibility_timeout=_VISIBILITY, max_deliveries=1
        )
    ) as held:
        yield held


def test_the_next_receive_gets_what_an_interrupted_sync_receive_fetched_on_its_first_attempt(
    held_broker: HeldNatsBroker,
    nats_url: str,
    nats_prefix: str,
    interrupt_when: Callable[[threading.Event], None],
) -> None:
    """Ctrl-C in a sync receive whose fetch is under way on the loop bridge."""
    with brokerkit.connect(nats_url, prefix=nats_prefix) as publisher:
        subscription, gate = interrupted_receive(held_broker, publisher, interrupt_when, group="g")
        gate.open()
        delivery = subscription.receive(timeout=GUARD)
        assert delivery is not None, "the message an interrupted receive fetched was lost"
        assert (delivery.body, delivery.attempt) == ("the one", 1)
        delivery.ack()
        wait_until(lambda: not held_broker._nats._leases, "the leases let go", GUARD)
        assert publisher.inspect("jobs.dlq").length == 0
        subscription.close()
