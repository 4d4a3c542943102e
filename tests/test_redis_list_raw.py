"""A raw element (one another program pushed onto a list brokerkit consumes) stays raw
through every hand-back, so that the other program can still read it; its attempts
are counted all the same, and forgotten when it is settled for good."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from typing import Any

import pytest
import redis

import brokerkit.aio
from tests.conftest import RedisTarget

pytestmark = pytest.mark.redis_list

PLAIN = json.dumps({"plain": True}).encode()


@pytest.fixture
def connect(redis_broker: Callable[..., Any], prefix: str) -> Callable[..., Any]:
    return functools.partial(redis_broker, "redis+list", queue_key=f"{prefix}-queue:*")


#: Elements that start like an envelope but are none: the consumer reads them raw, and
#: the scripts must agree (no hand-back wrapper for them either).
LOOKALIKES = [b"BK1 not an envelope", b'BK1{"id": 5}\nbody', b"BK1{not json}\nbody", b"BK1"]


@pytest.mark.parametrize("element", [PLAIN, *LOOKALIKES])
def test_a_nacked_raw_element_goes_back_as_it_was(
    connect: Callable[..., Any], redis_client: redis.Redis, prefix: str, element: bytes
) -> None:
    queue = f"{prefix}-queue:orders"
    redis_client.lpush(queue, element)
    broker = connect(visibility_timeout=30)
    subscription = broker.subscribe("orders")
    first = subscription.receive(timeout=5)
    assert first is not None and first.payload == element and first.attempt == 1
    assert first.id.startswith("raw-")
    first.nack()
    assert redis_client.lrange(queue, 0, -1) == [element]  # not wrapped for the other program
    again = subscription.receive(timeout=5)
    assert again is not None and again.attempt == 2 and again.redelivered
    assert again.id == first.id
    again.ack()
    attempts = broker._topic("orders").keys.attempts
    assert redis_client.exists(attempts) == 0  # settled for good: the count is gone


def test_a_purge_forgets_raw_counts(
    connect: Callable[..., Any], redis_client: redis.Redis, prefix: str
) -> None:
    """An identical raw element pushed after a purge starts from no attempts."""
    queue = f"{prefix}-queue:orders"
    redis_client.lpush(queue, PLAIN)
    broker = connect(visibility_timeout=30, max_deliveries=2)
    with broker.subscribe("orders") as subscription:
        delivery = subscription.receive(timeout=5)
        assert delivery is not None
        delivery.nack()  # counted: 1
    assert broker.purge("orders") == 1
    assert redis_client.exists(broker._topic("orders").keys.attempts) == 0
    redis_client.lpush(queue, PLAIN)
    with broker.subscribe("orders") as subscription:
        fresh = subscription.receive(timeout=5)
        assert fresh is not None and fresh.attempt == 1
        fresh.nack()  # 1 of 2: redelivered, not dead-lettered
        again = subscription.receive(timeout=5)
        assert again is not None and again.attempt == 2
        again.ack()


def test_a_raw_element_is_dead_lettered_after_max_deliveries_with_its_count(
    connect: Callable[..., Any], redis_client: redis.Redis, prefix: str
) -> None:
    queue = f"{prefix}-queue:orders"
    redis_client.lpush(queue, PLAIN)
    broker = connect(visibility_timeout=30, max_deliveries=3)
    subscription = broker.subscribe("orders")
    seen = []
    for _ in range(3):
        delivery = subscription.receive(timeout=5)
        assert delivery is not None
        seen.append(delivery.attempt)
        if delivery.attempt < 3:
            assert redis_client.lrange(queue, 0, -1) == []
        delivery.nack()
    assert seen == [1, 2, 3]
    assert redis_client.llen(queue) == 0
    dead = broker.subscribe(broker.dead_letter_topic("orders")).receive(timeout=5)
    assert dead is not None and dead.body == {"plain": True}
    assert dead.headers["x-deliveries"] == "3"
    assert redis_client.exists(broker._topic("orders").keys.attempts) == 0


def test_an_expired_raw_element_is_rescued_raw(
    connect: Callable[..., Any], redis_client: redis.Redis, prefix: str
) -> None:
    queue = f"{prefix}-queue:orders"
    redis_client.lpush(queue, PLAIN)
    hung = connect(visibility_timeout=0.2)
    delivery = hung.subscribe("orders").receive(timeout=5)
    assert delivery is not None
    hung._suspend_renewals()
    other = connect(visibility_timeout=30)
    again = other.subscribe("orders").receive(timeout=10)  # rescued once the lease ran out
    assert again is not None and again.attempt == 2
    assert again.payload == PLAIN
    again.nack()
    assert redis_client.lrange(queue, 0, -1) == [PLAIN]


def test_the_asyncio_broker_keeps_raw_elements_raw_too(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str
) -> None:
    queue = f"{prefix}-queue:orders"
    redis_client.lpush(queue, PLAIN)

    async def main() -> None:
        url = redis_target.url("redis+list")
        async with brokerkit.aio.connect(url, prefix=prefix, queue_key=f"{prefix}-queue:*") as b:
            subscription = await b.subscribe("orders")
            delivery = await subscription.receive(timeout=5)
            assert delivery is not None
            await delivery.nack()
            assert redis_client.lrange(queue, 0, -1) == [PLAIN]
            again = await subscription.receive(timeout=5)
            assert again is not None and again.attempt == 2
            await again.ack()

    asyncio.run(main())
