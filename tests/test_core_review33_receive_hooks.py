"""Delivery hooks of ``receive()`` on a backend without ACK (redis+pubsub): nothing can
settle such a delivery, so its hooks (an OpenTelemetry ``process`` span, the handler
duration) end ``"unsettled"`` at the next receive of its subscription, or when the
subscription or its broker closes, whichever comes first, once; under the asyncio API
too, and with several threads receiving. Where the backend has ACK they still end with
the settlement. A worker's slots, which end each delivery's hooks themselves, are not
cut short by another slot's receive."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from tests.conftest import RedisTarget, registered
from tests.waiting import wait_until

WAIT = 10.0


class Ends:
    """A plugin that writes down each delivery's start (its body) and end (its body,
    its outcome, what error it was handed)."""

    def __init__(self) -> None:
        self.started: list[Any] = []
        self.ended: list[tuple[Any, str]] = []
        self.errors: dict[Any, BaseException | None] = {}
        self._lock = threading.Lock()

    @brokerkit.hookimpl
    def brokerkit_deliver_start(self, delivery: Any) -> None:
        with self._lock:
            self.started.append(delivery.body)

    @brokerkit.hookimpl
    def brokerkit_deliver_end(self, delivery: Any, outcome: str, error: Any) -> None:
        with self._lock:
            self.ended.append((delivery.body, outcome))
            self.errors[delivery.body] = error


@pytest.fixture
def ends() -> Iterator[Ends]:
    yield from registered(Ends())


def _topic() -> str:
    return f"core33-{uuid.uuid4().hex[:10]}"


def _live(broker: Any, subscription: Any) -> None:
    """Wait until ``subscription`` is subscribed on the server (pub/sub keeps nothing
    for a later subscriber): a receive that returns nothing has made it live."""
    assert subscription.receive(timeout=0) is None


def test_receive_ends_the_previous_deliverys_hooks_at_the_next_receive(
    ends: Ends, redis_broker: Any
) -> None:
    broker = redis_broker("redis+pubsub")
    assert brokerkit.Capability.ACK not in broker.capabilities
    topic = _topic()
    with broker.subscribe(topic) as subscription:
        _live(broker, subscription)
        broker.publish_many(topic, [0, 1])
        first = subscription.receive(timeout=WAIT)
        assert first is not None and first.body == 0
        assert ends.ended == []  # open while the application holds it
        second = subscription.receive(timeout=WAIT)
        assert second is not None and second.body == 1
        assert ends.ended == [(0, "unsettled")]
        assert subscription.receive(timeout=0) is None  # a receive that brings nothing
        assert ends.ended == [(0, "unsettled"), (1, "unsettled")]
    assert ends.ended == [(0, "unsettled"), (1, "unsettled")]  # once each
    assert ends.started == [0, 1]


@pytest.mark.parametrize("closing", ["subscription", "broker"])
def test_the_close_ends_the_hooks_of_the_last_delivery_received(
    ends: Ends, redis_target: RedisTarget, closing: str
) -> None:
    topic = _topic()
    broker = brokerkit.connect(redis_target.url("redis+pubsub"), prefix=topic)
    try:
        subscription = broker.subscribe(topic)
        _live(broker, subscription)
        broker.publish(topic, 7)
        delivery = subscription.receive(timeout=WAIT)
        assert delivery is not None
        assert ends.ended == []
        if closing == "subscription":
            subscription.close()
        else:
            broker.close()
        assert ends.ended == [(7, "unsettled")]
        subscription.close()
    finally:
        broker.close()
    assert ends.ended == [(7, "unsettled")]


def test_under_asyncio_too(ends: Ends, redis_target: RedisTarget) -> None:
    topic = _topic()

    async def main() -> None:
        broker = await brokerkit.aio.connect(redis_target.url("redis+pubsub"), prefix=topic)
        async with broker:
            subscription = await broker.subscribe(topic)
            assert await subscription.receive(timeout=0) is None  # live on the server
            await broker.publish_many(topic, [0, 1])
            first = await subscription.receive(timeout=WAIT)
            assert first is not None and first.body == 0
            assert ends.ended == []
            second = await subscription.receive(timeout=WAIT)
            assert second is not None and second.body == 1
            assert ends.ended == [(0, "unsettled")]
            await subscription.close()
            assert ends.ended == [(0, "unsettled"), (1, "unsettled")]

    asyncio.run(asyncio.wait_for(main(), 60))
    assert ends.ended == [(0, "unsettled"), (1, "unsettled")]


def test_several_threads_receiving_end_each_delivery_once(ends: Ends, redis_broker: Any) -> None:
    broker = redis_broker("redis+pubsub")
    topic, readers, count = _topic(), 4, 200
    received: list[Any] = []
    lock = threading.Lock()
    with broker.subscribe(topic, prefetch=8) as subscription:
        _live(broker, subscription)
        start = threading.Barrier(readers + 1, timeout=WAIT)

        def read() -> None:
            start.wait()
            while True:
                with lock:
                    if len(received) >= count:
                        return
                delivery = subscription.receive(timeout=0.05)
                if delivery is not None:
                    with lock:
                        received.append(delivery.body)

        threads = [threading.Thread(target=read) for _ in range(readers)]
        for thread in threads:
            thread.start()
        start.wait()
        broker.publish_many(topic, list(range(count)))
        for thread in threads:
            thread.join(60)
            assert not thread.is_alive()
        assert sorted(received) == list(range(count))
        # every delivery but those the last receives handed out has ended already
        assert len(ends.ended) >= count - readers
    assert sorted(ends.ended) == [(i, "unsettled") for i in range(count)]


def test_with_ack_receive_leaves_the_hooks_to_the_settlement(ends: Ends) -> None:
    with brokerkit.connect(f"memory://core33-{uuid.uuid4().hex}") as broker:
        broker.publish_many("t", [0, 1])
        with broker.subscribe("t", prefetch=2) as subscription:
            first = subscription.receive(timeout=WAIT)
            second = subscription.receive(timeout=WAIT)
            assert first is not None and second is not None
            assert subscription.receive(timeout=0) is None
            assert ends.ended == []  # a later ack can still settle them
            first.ack()
            second.ack()
    assert ends.ended == [(0, "ack"), (1, "ack")]


class Boom(Exception):
    pass


def test_a_worker_slots_receive_does_not_end_another_slots_delivery(
    ends: Ends, redis_broker: Any
) -> None:
    broker = redis_broker("redis+pubsub")
    topic = _topic()
    worker = brokerkit.Worker(broker)
    third_started = threading.Event()

    @worker.handler(topic, concurrency=2, prefetch=1)
    def handle(body: int) -> None:
        if body == 0:  # held until the other slot received twice more
            assert third_started.wait(WAIT)
            raise Boom("handler 0")
        if body == 2:
            third_started.set()

    with worker.running():
        broker.publish_many(topic, [0, 1, 2])
        wait_until(lambda: len(ends.ended) == 3, "three ends", within=60)
    outcomes = dict(ends.ended)
    assert outcomes == {0: "nack", 1: "ack", 2: "ack"}
    assert isinstance(ends.errors[0], Boom)
