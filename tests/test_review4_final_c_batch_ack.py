"""Delivery hooks and the batch ack: a ``for`` loop (or ``consume``) that gathers
deliveries and settles them with one ``broker.ack(*batch)`` reports each one ``"ack"``
on a backend with ACK; what it never settles ends ``"unsettled"`` when the subscription
closes, once; on a backend without ACK each delivery ends ``"unsettled"`` as the loop
moves past it."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import brokerkit
import brokerkit.aio
from tests.conftest import registered


class Ends:
    """A plugin that writes down each delivery's end: (payload, outcome)."""

    def __init__(self) -> None:
        self.ended: list[tuple[Any, str]] = []

    @brokerkit.hookimpl
    def brokerkit_deliver_end(self, delivery: Any, outcome: str) -> None:
        self.ended.append((delivery.body, outcome))


@pytest.fixture(scope="module")
def ends() -> Iterator[Ends]:
    yield from registered(Ends())


def _url() -> str:
    return f"memory://final-c-{uuid.uuid4().hex}"


def _outcomes(ends: Ends) -> list[str]:
    outcomes = [outcome for _, outcome in ends.ended]
    ends.ended.clear()
    return outcomes


@settings(max_examples=15, deadline=None)
@given(published=st.integers(1, 6), data=st.data())
def test_a_for_loop_batch_ack_reports_every_delivery_acked(
    ends: Ends, published: int, data: st.DataObject
) -> None:
    ends.ended.clear()
    batch_size = data.draw(st.integers(1, published))
    with brokerkit.connect(_url()) as broker:
        broker.publish_many("t", list(range(published)))
        with broker.subscribe("t", prefetch=published) as subscription:
            batch = []
            for delivery in subscription:
                batch.append(delivery)
                if len(batch) == batch_size:
                    broker.ack(*batch)
                    break
            assert sorted(ends.ended) == [(i, "ack") for i in range(batch_size)]
    assert _outcomes(ends) == ["ack"] * batch_size


@settings(max_examples=15, deadline=None)
@given(published=st.integers(1, 6), data=st.data())
def test_a_consume_batch_ack_reports_every_delivery_acked(
    ends: Ends, published: int, data: st.DataObject
) -> None:
    ends.ended.clear()
    batch_size = data.draw(st.integers(1, published))
    with brokerkit.connect(_url()) as broker:
        broker.publish_many("t", list(range(published)))
        batch = []
        for delivery in broker.consume("t", timeout=0, prefetch=published):
            batch.append(delivery)
            if len(batch) == batch_size:
                broker.ack(*batch)
                batch = []
        if batch:
            broker.ack(*batch)  # after consume closed its subscription: too late
    full = published - published % batch_size
    assert sorted(ends.ended) == sorted(
        [(i, "ack") for i in range(full)] + [(i, "unsettled") for i in range(full, published)]
    )


def test_asyncio_loops_batch_ack_reports_every_delivery_acked(ends: Ends) -> None:
    ends.ended.clear()

    async def main() -> None:
        async with brokerkit.aio.connect(_url()) as broker:
            await broker.publish_many("t", [0, 1, 2, 3])
            async with await broker.subscribe("t", prefetch=4) as subscription:
                batch = []
                async for delivery in subscription:
                    batch.append(delivery)
                    if len(batch) == 2:
                        await broker.ack(*batch)
                        batch = []
                        if delivery.body == 3:
                            break
            await broker.publish_many("u", [0, 1, 2])
            batch = []
            async for delivery in broker.consume("u", timeout=0, prefetch=3):
                batch.append(delivery)
                if len(batch) == 3:
                    await broker.ack(*batch)

    asyncio.run(main())
    assert _outcomes(ends) == ["ack"] * 7


@pytest.mark.parametrize("how", ["for", "consume"])
def test_deliveries_never_settled_end_unsettled_when_the_subscription_closes_once(
    ends: Ends, how: str
) -> None:
    ends.ended.clear()
    with brokerkit.connect(_url()) as broker:
        broker.publish_many("t", [0, 1, 2, 3])
        held = []
        if how == "for":
            subscription = broker.subscribe("t", prefetch=4)
            for delivery in subscription:
                held.append(delivery)
                if delivery.body == 1:
                    delivery.ack()
                if len(held) == 3:
                    break
            assert ends.ended == [(1, "ack")]  # moving on ends nothing
            subscription.close()
            subscription.close()
        else:
            for delivery in broker.consume("t", timeout=0, prefetch=4, limit=3):
                held.append(delivery)
                if delivery.body == 1:
                    delivery.ack()
            assert len(held) == 3
        broker.ack(held[0])  # after the close: settled, its hooks already ended
    assert sorted(ends.ended) == [(0, "unsettled"), (1, "ack"), (2, "unsettled")]


def test_an_asyncio_for_loop_ends_what_it_never_settled_at_close(ends: Ends) -> None:
    ends.ended.clear()

    async def main() -> None:
        async with brokerkit.aio.connect(_url()) as broker:
            await broker.publish_many("t", [0, 1])
            subscription = await broker.subscribe("t", prefetch=2)
            held = []  # one dropped unsettled and collected never ends (docs say so)
            async for delivery in subscription:
                held.append(delivery)
                if delivery.body == 1:
                    break
            assert ends.ended == []
            await subscription.close()
            assert sorted(ends.ended) == [(0, "unsettled"), (1, "unsettled")]

    asyncio.run(main())
    assert _outcomes(ends) == ["unsettled", "unsettled"]


def test_without_ack_a_for_loop_and_consume_end_each_delivery_as_they_move_on(
    ends: Ends, redis_broker: Any
) -> None:
    ends.ended.clear()
    broker = redis_broker("redis+pubsub")
    assert brokerkit.Capability.ACK not in broker.capabilities
    with broker.subscribe("t") as subscription:
        subscription.receive(timeout=0)  # the subscription is live on the server
        broker.publish_many("t", [0, 1, 2])
        for delivery in subscription:
            assert ends.ended == [(i, "unsettled") for i in range(delivery.body)]
            if delivery.body == 2:
                break
    assert _outcomes(ends) == ["unsettled"] * 3

    live = threading.Event()

    def publish_until_live() -> None:  # pub/sub keeps nothing for a later subscriber
        deadline = time.monotonic() + 10
        while not live.wait(0.05) and time.monotonic() < deadline:
            broker.publish("u", 0)

    publisher = threading.Thread(target=publish_until_live)
    publisher.start()
    try:
        seen = 0
        for delivery in broker.consume("u", timeout=10):
            assert [outcome for _, outcome in ends.ended] == ["unsettled"] * seen
            if not live.is_set():
                live.set()
                publisher.join()
                broker.publish("u", 1)
            seen += 1
            if delivery.body == 1:
                break
    finally:
        live.set()
        publisher.join()
    assert _outcomes(ends) == ["unsettled"] * seen
