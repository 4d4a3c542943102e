"""One delivery settled by two calls at once (``asyncio.gather(d.ack(), d.nack())``): the
first settles it, every other raises :class:`AlreadySettled` (and changes nothing), on
every backend, as a second settle after the first returned does. A settle that fails
(an error other than :class:`StaleDelivery`, or a cancelled call) leaves the delivery
unsettled: it may be settled again (a cancelled one under the thread adapter once its
worker thread, if it had started the call, has ended it).

Over the backends the tests can reach: memory, redis+list and redis+stream (the
session's private redis-server), NATS JetStream (the session's nats-server) and
kombu+amqp (the shared RabbitMQ, skipped without one)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

import brokerkit.aio
from brokerkit import AlreadySettled, PermissionDenied, StaleDelivery
from brokerkit.aio import AsyncBroker, AsyncDelivery
from brokerkit.aio._threaded import ThreadedAsyncBroker
from tests.conftest import RedisTarget
from tests.kombu_rabbitmq import close_and_delete, rabbitmq
from tests.redis_server import RedisServer

__all__ = ["rabbitmq"]  # a fixture

BACKENDS = ["memory", "redis+list", "redis+stream", "nats", "kombu"]

#: A settling call on one delivery, by name.
SETTLES: dict[str, Callable[[AsyncDelivery], Awaitable[None]]] = {
    "ack": lambda d: d.ack(),
    "nack": lambda d: d.nack(),
    "reject": lambda d: d.nack(requeue=False),
    "broker.ack": lambda d: d.broker.ack(d),
    "broker.nack": lambda d: d.broker.nack(d),
}


@pytest.fixture(params=BACKENDS)
def connect(request: pytest.FixtureRequest) -> Iterator[Callable[[], Any]]:
    """``connect()``: an asyncio broker of the backend (entered with ``async with``),
    on names no other test uses; what it declared is deleted when the test ends."""
    name = request.param
    opened: list[Any] = []
    url: str
    options: dict[str, Any] = {"visibility_timeout": 5}
    if name == "memory":
        url = f"memory://settle-race-{uuid.uuid4().hex[:8]}"
    elif name.startswith("redis"):
        target: RedisTarget = request.getfixturevalue("redis_target")
        url = target.url(name)
        options["prefix"] = request.getfixturevalue("prefix")
    elif name == "nats":
        url = request.getfixturevalue("nats_url")
        options["prefix"] = request.getfixturevalue("nats_prefix")
    else:
        url = request.getfixturevalue("rabbitmq")
        options["prefix"] = f"bkk-{uuid.uuid4().hex[:12]}"

    @contextlib.asynccontextmanager
    async def factory() -> AsyncIterator[AsyncBroker]:
        async with brokerkit.aio.connect(url, **options) as broker:
            opened.append(broker)
            yield broker

    yield factory
    if name == "kombu":  # a sync broker under the thread adapter: its queues deleted
        close_and_delete([broker.sync for broker in opened])


async def _one_delivery(broker: AsyncBroker, topic: str) -> AsyncDelivery:
    subscription = await broker.subscribe(topic, group="g")
    await broker.publish(topic, b"x")
    delivery = await subscription.receive(timeout=10)
    assert delivery is not None
    return delivery


@pytest.mark.parametrize(
    "calls",
    [
        ("ack", "nack"),
        ("nack", "ack"),
        ("ack", "ack"),
        ("nack", "nack"),
        ("reject", "ack"),
        ("broker.ack", "broker.nack", "ack"),
        ("nack", "broker.ack", "reject", "ack"),
    ],
)
def test_of_settles_made_at_once_the_first_settles_and_the_others_are_refused(
    connect: Callable[[], Any], calls: tuple[str, ...]
) -> None:
    async def main() -> None:
        async with connect() as broker:
            topic = f"race-{uuid.uuid4().hex[:8]}"
            delivery = await _one_delivery(broker, topic)
            results = await asyncio.gather(
                *(SETTLES[call](delivery) for call in calls), return_exceptions=True
            )
            assert results[0] is None, results
            assert all(isinstance(r, AlreadySettled) for r in results[1:]), results
            assert delivery.settled
            # The first call alone ran: an ack leaves nothing to receive, a nack (with
            # requeue) hands the message out again, once, as its second attempt.
            subscription = delivery.subscription
            if calls[0] in ("nack", "broker.nack"):
                again = await subscription.receive(timeout=10)
                assert again is not None and again.attempt == 2
                await again.ack()
            assert await subscription.receive(timeout=0.3) is None
            with pytest.raises(AlreadySettled):
                await SETTLES[calls[-1]](delivery)
            await subscription.close()

    asyncio.run(main())


def test_a_batch_that_names_a_delivery_being_settled_is_refused_whole(
    connect: Callable[[], Any],
) -> None:
    async def main() -> None:
        async with connect() as broker:
            topic = f"race-{uuid.uuid4().hex[:8]}"
            subscription = await broker.subscribe(topic, group="g", prefetch=3)
            await broker.publish_many(topic, [0, 1, 2])
            first, second, third = [await subscription.receive(timeout=10) for _ in range(3)]
            assert first and second and third
            results = await asyncio.gather(
                broker.ack(first, second), broker.ack(second, third), return_exceptions=True
            )
            assert results[0] is None and isinstance(results[1], AlreadySettled), results
            assert first.settled and second.settled and not third.settled
            await third.ack()  # the refused batch changed nothing
            assert third.settled
            await subscription.close()

    asyncio.run(main())


def test_a_cancelled_settle_leaves_the_delivery_settleable(connect: Callable[[], Any]) -> None:
    async def main() -> None:
        async with connect() as broker:
            topic = f"race-{uuid.uuid4().hex[:8]}"
            delivery = await _one_delivery(broker, topic)
            acking = asyncio.ensure_future(delivery.ack())
            await asyncio.sleep(0)  # the ack is on its way
            acking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await acking
            if acking.cancelled() and isinstance(broker, ThreadedAsyncBroker):
                # (kombu) Its worker thread may have started the ack (or even ended
                # it), which goes on: the delivery reads as being settled until the
                # thread ends, then as it ended (test_threaded_cancelled_settle).
                assert await broker._threads_settled(10)
                if not delivery.settled:
                    await delivery.ack()
            elif acking.cancelled():
                assert not delivery.settled
                # It may have reached the server before the cancel: then the
                # message is settled there, and a second ack finds it stale.
                with contextlib.suppress(StaleDelivery):
                    await delivery.ack()
            assert delivery.settled
            await delivery.subscription.close()

    asyncio.run(main())


@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream"])
def test_a_settle_that_fails_leaves_the_delivery_settleable(scheme: str) -> None:
    """The server refuses the ack (an ACL took the user's scripts away): the delivery
    is unsettled, and an ack once the scripts are allowed again settles it."""
    with RedisServer() as server:
        client = server.client()

        async def main() -> None:
            async with brokerkit.aio.connect(server.url(scheme), visibility_timeout=30) as broker:
                delivery = await _one_delivery(broker, "refused")
                client.execute_command("ACL", "SETUSER", "default", "-evalsha", "-eval")
                try:
                    with pytest.raises(PermissionDenied):
                        await delivery.ack()
                    assert not delivery.settled
                finally:
                    client.execute_command("ACL", "SETUSER", "default", "+evalsha", "+eval")
                await delivery.ack()
                assert delivery.settled
                subscription = delivery.subscription
                assert await subscription.receive(timeout=0.3) is None
                await subscription.close()

        try:
            asyncio.run(main())
        finally:
            client.close()
