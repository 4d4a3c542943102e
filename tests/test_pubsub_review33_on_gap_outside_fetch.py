"""redis+pubsub's ``on_gap`` may close its subscription, or its broker.

``on_gap`` runs within the receive's fetch (so it is told before any delivery after
the gap: tests/test_pubsub_review33_on_gap_order.py). An ``async def`` one that awaited
the close of its subscription (to resync by subscribing anew) hung the asyncio receive
for ever: the close waited for the fetch's lock. Such a close now returns at once, the
subscription marked closed, and the receive that fetched does the closing (nothing
left subscribed) once it lets go of the lock, then raises ``BrokerClosed``; the sync
broker's close from ``on_gap`` does the same. What ``on_gap`` raises comes out of the
receive without losing a message.

Every wait is bounded, so a deadlock fails its test instead of hanging the suite.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis.pubsub import Gap
from brokerkit.exceptions import BrokerClosed
from tests.pubsub_gaps import kill_subscriber, subscribers
from tests.redis_server import RedisServer

#: The most any one step may take (a bound against a hang, not an expectation).
BOUND = 20.0


class Boom(Exception):
    """What the test's on_gap raises."""


def _receive_until_raises(receive: Callable[[], object], bodies: list[str]) -> None:
    """Receive (sync) until a receive raises, which is re-raised; the bodies received
    before go to ``bodies``."""
    end = time.monotonic() + BOUND
    while time.monotonic() < end:
        delivery = receive()
        if delivery is not None:
            bodies.append(delivery.body)  # type: ignore[attr-defined]
    raise AssertionError(f"no receive raised; received {bodies}")


async def _areceive_until_raises(
    subscription: brokerkit.aio.AsyncSubscription, bodies: list[str]
) -> None:
    """Receive until a receive raises, which is re-raised (each receive bounded); the
    bodies received before go to ``bodies``."""
    end = time.monotonic() + BOUND
    while time.monotonic() < end:
        delivery = await asyncio.wait_for(subscription.receive(timeout=0.5), BOUND)
        if delivery is not None:
            bodies.append(delivery.body)
    raise AssertionError(f"no receive raised; received {bodies}")


@pytest.mark.timeout(90)
def test_an_async_on_gap_may_await_the_close_of_its_subscription(
    redis_server: RedisServer,
) -> None:
    consumer = f"review33-{uuid.uuid4().hex[:8]}"
    client = redis_server.client()
    told: list[tuple[int, bool, list[int]]] = []
    subscriptions: list[brokerkit.aio.AsyncSubscription] = []

    async def resync(gap: Gap) -> None:
        await subscriptions[0].close()  # resync: subscribe anew
        told.append((gap.number, subscriptions[0].closed, subscribers(client, consumer)))

    async def main() -> None:
        url = redis_server.url("redis+pubsub")
        async with brokerkit.aio.connect(url, on_gap=resync) as broker:
            subscriptions.append(await broker.subscribe("news", consumer=consumer))
            kill_subscriber(client, consumer)
            with pytest.raises(BrokerClosed):
                # (it hung here: the close waited for the fetch, which awaited on_gap)
                await _areceive_until_raises(subscriptions[0], [])
            # the close returned within on_gap, the subscription closed; the receive
            # did the closing before it raised: unsubscribed, connection gone
            assert [(number, closed) for number, closed, _ in told] == [(1, True)]
            assert subscribers(client, consumer) == []
            # a later close waits for that closing, which has ended
            await asyncio.wait_for(subscriptions[0].close(), BOUND)
            # and the resync's new subscription hears what is published now
            again = await broker.subscribe("news", consumer=consumer)
            assert (await broker.publish_counted("news", "after")).receivers == 1
            delivery = await asyncio.wait_for(again.receive(timeout=BOUND), BOUND)
            assert delivery is not None and delivery.body == "after"

    try:
        asyncio.run(main())
    finally:
        client.close()


@pytest.mark.timeout(90)
def test_an_async_on_gap_may_await_the_close_of_its_broker(redis_server: RedisServer) -> None:
    consumer = f"review33-{uuid.uuid4().hex[:8]}"
    client = redis_server.client()
    told: list[tuple[int, bool]] = []
    brokers: list[brokerkit.aio.AsyncBroker] = []

    async def start_over(gap: Gap) -> None:
        await brokers[0].close()
        told.append((gap.number, brokers[0].closed))

    async def main() -> None:
        url = redis_server.url("redis+pubsub")
        broker = await brokerkit.aio.connect(url, on_gap=start_over)
        brokers.append(broker)
        try:
            subscription = await broker.subscribe("news", consumer=consumer)
            kill_subscriber(client, consumer)
            with pytest.raises(BrokerClosed):
                await _areceive_until_raises(subscription, [])
            assert told == [(1, True)]
            assert subscription.closed
            assert subscribers(client, consumer) == []
        finally:
            await asyncio.wait_for(broker.close(), BOUND)

    try:
        asyncio.run(main())
    finally:
        client.close()


@pytest.mark.timeout(90)
def test_a_sync_on_gap_may_close_its_subscription(redis_server: RedisServer) -> None:
    consumer = f"review33-{uuid.uuid4().hex[:8]}"
    client = redis_server.client()
    told: list[tuple[int, bool, list[int]]] = []
    subscriptions: list[brokerkit.Subscription] = []

    def resync(gap: Gap) -> None:
        subscriptions[0].close()
        told.append((gap.number, subscriptions[0].closed, subscribers(client, consumer)))

    url = redis_server.url("redis+pubsub")
    try:
        with brokerkit.connect(url, on_gap=resync) as broker:
            subscriptions.append(broker.subscribe("news", consumer=consumer))
            kill_subscriber(client, consumer)
            with pytest.raises(BrokerClosed):
                _receive_until_raises(lambda: subscriptions[0].receive(timeout=0.5), [])
            # the close marked it closed within on_gap; the receive did the closing
            # before it raised: nothing left subscribed
            assert [(number, closed) for number, closed, _ in told] == [(1, True)]
            assert subscribers(client, consumer) == []
    finally:
        client.close()


@pytest.mark.timeout(90)
def test_what_an_async_on_gap_raises_loses_no_message(redis_server: RedisServer) -> None:
    consumer = f"review33-{uuid.uuid4().hex[:8]}"
    client = redis_server.client()
    told: list[Gap] = []

    async def resync(gap: Gap) -> None:
        told.append(gap)
        raise Boom("resync failed")

    async def main() -> None:
        url = redis_server.url("redis+pubsub")
        async with brokerkit.aio.connect(url, on_gap=resync) as broker:
            subscription = await broker.subscribe("news", consumer=consumer, prefetch=10)
            for body in ("m1", "m2"):
                assert (await broker.publish_counted("news", body)).receivers == 1
            kill_subscriber(client, consumer)
            before: list[str] = []
            with pytest.raises(Boom, match="resync failed"):
                await _areceive_until_raises(subscription, before)
            # what reached the socket before the loss is received first
            assert before == ["m1", "m2"]
            assert [gap.number for gap in told] == [1]
            for body in ("m3", "m4"):
                assert (await broker.publish_counted("news", body)).receivers == 1
            bodies = []
            while len(bodies) < 2:
                delivery = await asyncio.wait_for(subscription.receive(timeout=BOUND), BOUND)
                assert delivery is not None
                bodies.append(delivery.body)
            assert bodies == ["m3", "m4"]
            assert [gap.number for gap in told] == [1]  # told once

    try:
        asyncio.run(main())
    finally:
        client.close()


@pytest.mark.timeout(90)
def test_what_a_sync_on_gap_raises_loses_no_message(redis_server: RedisServer) -> None:
    consumer = f"review33-{uuid.uuid4().hex[:8]}"
    client = redis_server.client()
    told: list[Gap] = []

    def resync(gap: Gap) -> None:
        told.append(gap)
        raise Boom("resync failed")

    url = redis_server.url("redis+pubsub")
    try:
        with brokerkit.connect(url, on_gap=resync) as broker:
            subscription = broker.subscribe("news", consumer=consumer, prefetch=10)
            for body in ("m1", "m2"):
                assert broker.publish_counted("news", body).receivers == 1
            kill_subscriber(client, consumer)
            before: list[str] = []
            with pytest.raises(Boom, match="resync failed"):
                _receive_until_raises(lambda: subscription.receive(timeout=0.5), before)
            assert before == ["m1", "m2"]
            assert [gap.number for gap in told] == [1]
            for body in ("m3", "m4"):
                assert broker.publish_counted("news", body).receivers == 1
            bodies = []
            while len(bodies) < 2:
                delivery = subscription.receive(timeout=BOUND)
                assert delivery is not None
                bodies.append(delivery.body)
            assert bodies == ["m3", "m4"]
            assert [gap.number for gap in told] == [1]
    finally:
        client.close()
