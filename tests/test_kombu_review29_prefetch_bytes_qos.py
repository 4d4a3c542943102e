"""kombu+amqp: a subscription's consumer follows its batch when ``prefetch_bytes``
changes it. RabbitMQ keeps a consumer's ``basic.qos`` for the consumer's life, and
the consumer a waiting receive registers was kept with the qos of the batch it was
registered for: once bigger messages shrank the batch (``prefetch=50,
prefetch_bytes=100_000``, 50 kB messages: 2 a fetch), RabbitMQ went on pushing up to
50 of them to the subscription, held in its memory and from the group's other members
(which got nothing, though 18 were waiting for no one); a consumer registered before
any message was seen (a batch of 1) was pushed one at a time ever after.
Real RabbitMQ: one topic under the test's own prefix."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import brokerkit.aio
from tests.kombu_rabbitmq import delete_names, kombu_broker, rabbitmq

__all__ = ["kombu_broker", "rabbitmq"]

Factory = Callable[..., Any]


def test_bigger_messages_shrink_what_the_consumer_is_pushed(kombu_broker: Factory) -> None:
    broker = kombu_broker(visibility_timeout=60)
    files = broker.subscribe("files", group="g", prefetch=50, prefetch_bytes=100_000)
    other = broker.subscribe("files", group="g")  # another member of the group
    broker.publish("files", b"x" * 100)
    first = files.receive(timeout=5)
    assert first is not None
    first.ack()  # (a batch of 50 from now on: 100 bytes seen)
    assert files.receive(timeout=0.2) is None  # waits as a consumer, qos 50
    broker.publish("files", b"y" * 50_000)
    big = files.receive(timeout=5)
    assert big is not None
    big.ack()  # (a batch of 2 from now on)
    broker.publish_many("files", [b"z" * 50_000 for _ in range(20)])
    held = files.receive(timeout=5)
    assert held is not None
    assert files.buffered <= 1  # (a fetch of 2)
    # RabbitMQ pushed the subscription 2 of the 20, not all of them.
    for_the_other = other.receive(timeout=5)
    assert for_the_other is not None
    for_the_other.ack()
    held.ack()
    files.close()
    other.close()


def test_a_consumer_registered_before_any_message_grows_with_the_batch(
    kombu_broker: Factory,
) -> None:
    broker = kombu_broker(visibility_timeout=60)
    with broker.subscribe("notes", prefetch=10, prefetch_bytes=1_000_000) as notes:
        assert notes.receive(timeout=0.2) is None  # a batch of 1: waits with qos 1
        broker.publish("notes", "small")
        delivery = notes.receive(timeout=5)
        assert delivery is not None
        delivery.ack()  # (a batch of 10 from now on)
        assert notes.receive(timeout=0.2) is None
        assert notes.state.qos == 10  # the consumer it waits with now


def test_under_asyncio_too(rabbitmq: str) -> None:
    # (the thread adapter hands the sync backend a twin of the asyncio subscription:
    # it carries prefetch_bytes now, which the backend's consumer goes by)
    prefix = f"bkk-r29q-{uuid.uuid4().hex[:10]}"

    made: list[Any] = []

    async def run() -> None:
        broker = await brokerkit.aio.connect(rabbitmq, prefix=prefix, visibility_timeout=60)
        made.append(broker)
        try:
            files = await broker.subscribe("files", group="g", prefetch=50, prefetch_bytes=100_000)
            other = await broker.subscribe("files", group="g")
            await broker.publish("files", b"x" * 100)
            first = await files.receive(timeout=5)
            assert first is not None
            await first.ack()
            assert await files.receive(timeout=0.2) is None  # waits as a consumer, qos 50
            await broker.publish("files", b"y" * 50_000)
            big = await files.receive(timeout=5)
            assert big is not None
            await big.ack()  # (a batch of 2 from now on)
            await broker.publish_many("files", [b"z" * 50_000 for _ in range(20)])
            held = await files.receive(timeout=5)
            assert held is not None
            for_the_other = await other.receive(timeout=5)
            assert for_the_other is not None
            await for_the_other.ack()
            await held.ack()
            await files.close()
            await other.close()
        finally:
            await broker.close()

    try:
        asyncio.run(run())
    finally:
        for broker in made:
            declared = broker.sync.declared
            delete_names(set(declared.exchanges), set(declared.queues))
