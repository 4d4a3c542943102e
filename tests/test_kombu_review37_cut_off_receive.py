"""kombu+amqp (and kombu's virtual transports): a receive cut off by a timeout no
longer costs its messages an attempt, nor their order. Under brokerkit.aio a receive
cut off by ``wait_for`` or ``asyncio.timeout`` leaves its fetch running, and what that
fetch brought was handed back with ``basic.reject(requeue=True)``: the quorum queue
counted the return, so in a polling loop of ``wait_for(receive(), 0.2)`` every message
came at attempt 2 and, with ``max_deliveries=1``, all were dead-lettered unseen; and
the rejected ones went behind those published after them (ORDERED lost). What such a
fetch brings now stays the subscription's, for its next receive; what it kept goes
back to the queue when the subscription closes. kombu+memory put them back at its
queue's end, out of order: they are kept there too. The sync API's
``receive(timeout=...)`` never cuts a fetch off; its two tests guard that it stays so.

Real RabbitMQ: each test under a prefix of its own, whose exchanges and queues are
deleted afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from tests.kombu_rabbitmq import close_and_delete, rabbitmq
from tests.redis_stream_aio_support import run

__all__ = ["rabbitmq"]

#: Seconds any wait of these tests may take at most: a hang guard, never a pace.
GUARD = 30.0
#: Messages of the polling tests.
COUNT = 10
#: The order test's batch.
BATCH = [10, 11, 12, 13]

Factory = Callable[..., Any]


@pytest.fixture
def brokers(rabbitmq: str) -> Iterator[tuple[Factory, Factory]]:
    """``(sync, aio)``: each makes a kombu+amqp broker under this test's own prefix
    (``aio`` is a coroutine function); all are closed, and what they declared is
    deleted, when the test ends."""
    prefix = f"bkk-r37-{uuid.uuid4().hex[:10]}"
    made: list[Any] = []

    def sync(**options: Any) -> Any:
        broker = brokerkit.connect(rabbitmq, prefix=prefix, **options)
        made.append(broker)
        return broker

    async def aio(**options: Any) -> Any:
        broker = await brokerkit.aio.connect(rabbitmq, prefix=prefix, **options)
        made.append(broker.sync)
        return broker

    try:
        yield sync, aio
    finally:
        close_and_delete(made)


async def _cut_off(subscription: Any) -> None:
    """A receive cut off by a timeout while its fetch waits: the fetch runs on."""
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await subscription.receive(None)


async def _receive_all(subscription: Any, count: int) -> list[tuple[Any, int]]:
    got = []
    for _ in range(count):
        delivery = await subscription.receive(timeout=GUARD)
        assert delivery is not None, f"only {got} came"
        got.append((delivery.body, delivery.attempt))
        await delivery.ack()
    return got


# -- brokerkit.aio -----------------------------------------------------------------------


def test_a_wait_for_polling_loop_sees_every_message_at_attempt_1(
    brokers: tuple[Factory, Factory],
) -> None:
    """Each message is published while the consumer's receive that was just cut off
    still fetches (the producer waits for a timed-out receive before each one)."""
    _, aio = brokers

    async def main() -> tuple[list[tuple[Any, int]], int, int]:
        broker = await aio(max_deliveries=1, visibility_timeout=60)
        publisher = await aio()
        subscription = await broker.subscribe("jobs")
        timed_out = asyncio.Event()

        async def produce() -> None:
            for n in range(COUNT):
                await timed_out.wait()
                timed_out.clear()
                await publisher.publish("jobs", n)

        producer = asyncio.create_task(produce())
        got: list[tuple[Any, int]] = []
        while len(got) < COUNT and not producer.done():
            try:
                delivery = await asyncio.wait_for(subscription.receive(), 0.2)
            except TimeoutError:
                timed_out.set()
                continue
            got.append((delivery.body, delivery.attempt))
            await delivery.ack()
        await producer
        # (the last ones, published as the loop ended; None: dead-lettered, see below)
        while len(got) < COUNT and (delivery := await subscription.receive(GUARD)) is not None:
            got.append((delivery.body, delivery.attempt))
            await delivery.ack()
        await subscription.close()
        dead = (await publisher.inspect(publisher.dead_letter_topic("jobs"))).length
        in_flight = (await publisher.inspect("jobs")).in_flight
        await broker.close()
        await publisher.close()
        return got, dead, in_flight

    got, dead, in_flight = run(main(), 3 * GUARD)
    assert got == [(n, 1) for n in range(COUNT)], "a cut-off receive cost an attempt"
    assert dead == 0, "messages were dead-lettered that no handler saw"
    assert in_flight == 0


@pytest.mark.parametrize("prefetch", [1, 2])
def test_a_timed_out_receive_keeps_publish_order(
    brokers: tuple[Factory, Factory], prefetch: int
) -> None:
    _, aio = brokers

    async def main() -> list[tuple[Any, int]]:
        broker = await aio(visibility_timeout=60)
        subscription = await broker.subscribe("jobs", prefetch=prefetch)
        await _cut_off(subscription)
        await broker.publish_many("jobs", BATCH)
        got = await _receive_all(subscription, len(BATCH))
        assert await subscription.receive(timeout=0) is None
        await subscription.close()
        await broker.close()
        return got

    assert run(main()) == [(n, 1) for n in BATCH]


def test_what_a_cut_off_receive_kept_goes_back_when_its_subscription_closes(
    brokers: tuple[Factory, Factory],
) -> None:
    """Kept for the next receive, it is not stranded when none comes: the close hands
    it back at once, not after the visibility timeout (60 s, beyond the guard)."""
    _, aio = brokers

    async def main() -> list[Any]:
        broker = await aio(visibility_timeout=60)
        other = await aio(visibility_timeout=60)
        subscription = await broker.subscribe("jobs", prefetch=2)
        await _cut_off(subscription)
        await broker.publish_many("jobs", BATCH)
        await subscription.close()
        taker = await other.subscribe("jobs", prefetch=4)
        got = [body for body, _ in await _receive_all(taker, len(BATCH))]
        await taker.close()
        await broker.close()
        await other.close()
        return got

    assert sorted(run(main())) == BATCH


def test_kombu_memory_keeps_publish_order_after_a_timed_out_receive() -> None:
    """kombu+memory put what the cut-off receive's fetch took back at its queue's
    end: 12, 13, 10, 11."""

    async def main() -> list[Any]:
        url = f"kombu+memory://?prefix=bkt-r37-{uuid.uuid4().hex[:10]}"
        broker = await brokerkit.aio.connect(url)
        try:
            subscription = await broker.subscribe("jobs", prefetch=2)
            await _cut_off(subscription)
            await broker.publish_many("jobs", BATCH)
            got = [body for body, _ in await _receive_all(subscription, len(BATCH))]
            await subscription.close()
            return got
        finally:
            with contextlib.suppress(Exception):  # (kombu's process-wide store: tidy it)
                broker.sync.delete(*broker.sync.declared)
            await broker.close()

    assert run(main()) == BATCH


# -- the sync API ------------------------------------------------------------------------


def test_a_sync_polling_loop_with_a_timeout_sees_every_message_at_attempt_1(
    brokers: tuple[Factory, Factory],
) -> None:
    sync, _ = brokers
    broker = sync(max_deliveries=1, visibility_timeout=60)
    publisher = sync()
    subscription = broker.subscribe("jobs")
    timed_out = threading.Event()
    stop = threading.Event()
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            for n in range(COUNT):
                while not timed_out.wait(0.1):
                    if stop.is_set():
                        return
                timed_out.clear()
                publisher.publish("jobs", n)
        except BaseException as exc:  # (reported below)
            errors.append(exc)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    got: list[tuple[Any, int]] = []
    try:
        while len(got) < COUNT and producer.is_alive():
            delivery = subscription.receive(timeout=0.2)
            if delivery is None:
                timed_out.set()
                continue
            got.append((delivery.body, delivery.attempt))
            delivery.ack()
    finally:
        stop.set()
        producer.join(GUARD)
    assert not errors
    while len(got) < COUNT and (delivery := subscription.receive(timeout=GUARD)) is not None:
        got.append((delivery.body, delivery.attempt))
        delivery.ack()
    subscription.close()
    assert got == [(n, 1) for n in range(COUNT)]
    assert publisher.inspect(publisher.dead_letter_topic("jobs")).length == 0


def test_a_sync_receive_that_timed_out_keeps_publish_order(
    brokers: tuple[Factory, Factory],
) -> None:
    sync, _ = brokers
    broker = sync(visibility_timeout=60)
    with broker.subscribe("jobs", prefetch=2) as subscription:
        assert subscription.receive(timeout=0.3) is None
        broker.publish_many("jobs", BATCH)
        got = []
        for _ in BATCH:
            delivery = subscription.receive(timeout=GUARD)
            assert delivery is not None
            got.append((delivery.body, delivery.attempt))
            delivery.ack()
    assert got == [(n, 1) for n in BATCH]
