"""Delivery hooks of ``receive()`` on a backend without ACK (redis+pubsub). There an ack
or a nack only marks a delivery settled, and ends its hooks (an OpenTelemetry
``process`` span, the handler duration) as ``"ack"`` / ``"nack"`` as anywhere else,
however much later: a batch ack after several receives, or two tasks or threads
sharing one subscription, each settling its own. One never settled ends
``"unsettled"`` when the application lets it go (the garbage collector takes it) or
when its subscription or broker closes, whichever comes first, once (threads racing
the close, the collector and the ack included); the subscription holds it weakly, so a
subscriber that never settles keeps nothing. Under the asyncio API too. Where the
backend has ACK (memory://) nothing changed: the hooks end at the settlement alone.
A worker's slots, which end each delivery's hooks themselves, are not cut short by
another slot's receive."""

from __future__ import annotations

import asyncio
import gc
import threading
import uuid
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from brokerkit._delivery_drops import drain
from tests.conftest import RedisTarget, registered
from tests.waiting import wait_until

WAIT = 10.0


class Ends:
    """A plugin that writes down each delivery's start (its body) and end (its body and
    outcome; what error and which delivery's topic and id it was handed)."""

    def __init__(self) -> None:
        self.started: list[Any] = []
        self.ended: list[tuple[Any, str]] = []
        self.errors: dict[Any, BaseException | None] = {}
        self.handed: dict[Any, tuple[str, str, bool]] = {}
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
            self.handed[delivery.body] = (delivery.topic, delivery.id, delivery.settled)


@pytest.fixture
def ends() -> Iterator[Ends]:
    yield from registered(Ends())


def _topic() -> str:
    return f"core33-{uuid.uuid4().hex[:10]}"


def _live(subscription: Any) -> None:
    """Wait until ``subscription`` is subscribed on the server (pub/sub keeps nothing
    for a later subscriber): a receive that returns nothing has made it live."""
    assert subscription.receive(timeout=0) is None


def _collect() -> None:
    """Collect what the application let go, and wait for the ends this queued (made in
    a background thread, or at the next delivery's start, settlement or close)."""
    gc.collect()
    drain()


def _receive(subscription: Any, count: int) -> list[Any]:
    got = [subscription.receive(timeout=WAIT) for _ in range(count)]
    assert None not in got
    return got


def test_a_batch_ack_after_several_receives_ends_each_ack(ends: Ends, redis_broker: Any) -> None:
    broker = redis_broker("redis+pubsub")
    assert brokerkit.Capability.ACK not in broker.capabilities
    topic = _topic()
    with broker.subscribe(topic) as subscription:
        _live(subscription)
        broker.publish_many(topic, [0, 1, 2])
        batch = _receive(subscription, 3)
        assert subscription.receive(timeout=0) is None  # a receive that brings nothing
        assert ends.ended == []  # all three open while the application handles them
        broker.ack(*batch)
        assert ends.ended == [(0, "ack"), (1, "ack"), (2, "ack")]
    assert ends.ended == [(0, "ack"), (1, "ack"), (2, "ack")]  # the close ends none again
    assert ends.started == [0, 1, 2]


def test_a_nack_ends_nack_after_later_receives(ends: Ends, redis_broker: Any) -> None:
    broker = redis_broker("redis+pubsub")
    topic = _topic()
    with broker.subscribe(topic) as subscription:
        _live(subscription)
        broker.publish_many(topic, [0, 1])
        first, second = _receive(subscription, 2)
        first.nack(requeue=False)
        second.ack()
    assert ends.ended == [(0, "nack"), (1, "ack")]


def test_threads_sharing_a_subscription_end_their_own_at_their_own_ack(
    ends: Ends, redis_broker: Any
) -> None:
    broker = redis_broker("redis+pubsub")
    topic = _topic()
    first_received, second_acked = threading.Event(), threading.Event()
    seen: list[list[tuple[Any, str]]] = []
    raised: list[BaseException] = []

    def first(subscription: Any) -> None:
        try:
            delivery = subscription.receive(timeout=WAIT)
            first_received.set()
            assert second_acked.wait(WAIT)
            seen.append(list(ends.ended))  # the other thread's receive left this open
            delivery.ack()
        except BaseException as exc:
            raised.append(exc)

    with broker.subscribe(topic) as subscription:
        _live(subscription)
        broker.publish_many(topic, ["a", "b"])
        thread = threading.Thread(target=first, args=(subscription,))
        thread.start()
        assert first_received.wait(WAIT)
        delivery = subscription.receive(timeout=WAIT)
        assert delivery is not None and delivery.body == "b"
        delivery.ack()
        second_acked.set()
        thread.join(WAIT)
        assert not thread.is_alive() and not raised
    assert seen == [[("b", "ack")]]
    assert ends.ended == [("b", "ack"), ("a", "ack")]


def test_two_tasks_sharing_a_subscription_end_their_own_at_their_own_ack(
    ends: Ends, redis_target: RedisTarget
) -> None:
    topic = _topic()
    seen: list[list[tuple[Any, str]]] = []

    async def main() -> None:
        broker = await brokerkit.aio.connect(redis_target.url("redis+pubsub"), prefix=topic)
        async with broker:
            subscription = await broker.subscribe(topic)
            assert await subscription.receive(timeout=0) is None  # live on the server
            await broker.publish_many(topic, ["a", "b"])
            first_received, second_acked = asyncio.Event(), asyncio.Event()

            async def first() -> None:
                delivery = await subscription.receive(timeout=WAIT)
                assert delivery is not None and delivery.body == "a"
                first_received.set()
                await second_acked.wait()
                seen.append(list(ends.ended))  # the other task's receive left it open
                await delivery.ack()

            async def second() -> None:
                await first_received.wait()
                delivery = await subscription.receive(timeout=WAIT)
                assert delivery is not None and delivery.body == "b"
                assert ends.ended == []
                await delivery.ack()
                second_acked.set()

            await asyncio.gather(first(), second())
            await subscription.close()

    asyncio.run(asyncio.wait_for(main(), 60))
    assert seen == [[("b", "ack")]]
    assert ends.ended == [("b", "ack"), ("a", "ack")]


def test_a_delivery_let_go_unsettled_ends_unsettled(ends: Ends, redis_broker: Any) -> None:
    broker = redis_broker("redis+pubsub")
    topic = _topic()
    with broker.subscribe(topic) as subscription:
        _live(subscription)
        broker.publish_many(topic, [0, 1])
        delivery = subscription.receive(timeout=WAIT)
        assert delivery is not None
        topic_id = (delivery.topic, delivery.id, False)
        del delivery
        _collect()
        assert ends.ended == [(0, "unsettled")]
        # the hooks were handed a delivery of the same message
        assert ends.handed[0] == topic_id
        kept = subscription.receive(timeout=WAIT)
        assert kept is not None
        assert ends.ended == [(0, "unsettled")]  # a later receive ends nothing
    assert ends.ended == [(0, "unsettled"), (1, "unsettled")]
    del kept
    _collect()
    assert ends.ended == [(0, "unsettled"), (1, "unsettled")]  # once each


def test_the_subscription_keeps_no_delivery_it_handed_out(ends: Ends, redis_broker: Any) -> None:
    """A subscriber that never settles holds nothing: each delivery goes as soon as the
    application lets it go (no collection needed), its hooks ended then."""
    broker = redis_broker("redis+pubsub")
    topic = _topic()
    with broker.subscribe(topic) as subscription:
        _live(subscription)
        broker.publish_many(topic, list(range(50)))
        for number in range(50):
            delivery = subscription.receive(timeout=WAIT)
            assert delivery is not None and delivery.body == number
            gone = weakref.ref(delivery)
            del delivery
            assert gone() is None
            drain()
            assert ends.ended[-1] == (number, "unsettled")
    assert ends.ended == [(number, "unsettled") for number in range(50)]


@pytest.mark.parametrize("closing", ["subscription", "broker"])
def test_the_close_ends_those_still_alive_and_unsettled(
    ends: Ends, redis_target: RedisTarget, closing: str
) -> None:
    topic = _topic()
    broker = brokerkit.connect(redis_target.url("redis+pubsub"), prefix=topic)
    try:
        subscription = broker.subscribe(topic)
        _live(subscription)
        broker.publish_many(topic, [0, 1, 2, 3])
        acked, dropped, kept, also_kept = _receive(subscription, 4)
        acked.ack()
        del dropped
        _collect()
        assert ends.ended == [(0, "ack"), (1, "unsettled")]
        if closing == "subscription":
            subscription.close()
        else:
            broker.close()
        assert sorted(ends.ended) == [
            (0, "ack"),
            (1, "unsettled"),
            (2, "unsettled"),
            (3, "unsettled"),
        ]
        if closing == "subscription":
            kept.ack()  # settled after the close: its hooks have ended already
        subscription.close()
    finally:
        broker.close()
    del kept, also_kept
    _collect()
    assert len(ends.ended) == 4


def test_under_asyncio_too(ends: Ends, redis_target: RedisTarget) -> None:
    topic = _topic()

    async def main() -> None:
        broker = await brokerkit.aio.connect(redis_target.url("redis+pubsub"), prefix=topic)
        async with broker:
            subscription = await broker.subscribe(topic)
            assert await subscription.receive(timeout=0) is None  # live on the server
            await broker.publish_many(topic, [0, 1, 2])
            first = await subscription.receive(timeout=WAIT)
            second = await subscription.receive(timeout=WAIT)
            third = await subscription.receive(timeout=WAIT)
            assert isinstance(first, brokerkit.aio.AsyncDelivery)
            assert second is not None and third is not None
            assert ends.ended == []
            del first
            _collect()
            assert ends.ended == [(0, "unsettled")]
            await second.ack()
            assert ends.ended == [(0, "unsettled"), (1, "ack")]
            await subscription.close()
            assert ends.ended == [(0, "unsettled"), (1, "ack"), (2, "unsettled")]

    asyncio.run(asyncio.wait_for(main(), 60))
    assert ends.ended == [(0, "unsettled"), (1, "ack"), (2, "unsettled")]


def test_threads_racing_the_close_the_collector_and_the_ack_end_each_once(
    ends: Ends, redis_broker: Any
) -> None:
    broker = redis_broker("redis+pubsub")
    topic, count = _topic(), 300
    subscription = broker.subscribe(topic, prefetch=64)
    _live(subscription)
    broker.publish_many(topic, list(range(count)))
    received = _receive(subscription, count)
    acked = [d for d in received if d.body % 3 == 0]
    dropped = [d for d in received if d.body % 3 == 1]
    del received
    start = threading.Barrier(3, timeout=WAIT)
    raised: list[BaseException] = []

    def ack() -> None:
        try:
            start.wait()
            for delivery in acked:
                broker.ack(delivery)
        except BaseException as exc:
            raised.append(exc)

    def drop() -> None:
        try:
            start.wait()
            while dropped:
                dropped.pop()
                if len(dropped) % 16 == 0:
                    _collect()
        except BaseException as exc:
            raised.append(exc)

    threads = [threading.Thread(target=ack), threading.Thread(target=drop)]
    for thread in threads:
        thread.start()
    start.wait()
    subscription.close()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()
    assert not raised
    _collect()
    bodies = [body for body, _ in ends.ended]
    assert sorted(bodies) == list(range(count))  # each once
    outcomes = dict(ends.ended)
    for body in range(count):
        # an ack after the close finds the hooks ended already
        expected = {"ack", "unsettled"} if body % 3 == 0 else {"unsettled"}
        assert outcomes[body] in expected, (body, outcomes[body])


def test_with_ack_receive_leaves_the_hooks_to_the_settlement(ends: Ends) -> None:
    with brokerkit.connect(f"memory://core33-{uuid.uuid4().hex}") as broker:
        assert brokerkit.Capability.ACK in broker.capabilities
        broker.publish_many("t", [0, 1, 2])
        with broker.subscribe("t", prefetch=3) as subscription:
            first, second, dropped = _receive(subscription, 3)
            assert subscription.receive(timeout=0) is None
            del dropped
            _collect()
            assert ends.ended == []  # a later ack can still settle them
            broker.ack(first, second)
    # one dropped unsettled never ends on a backend with ACK (as before)
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
