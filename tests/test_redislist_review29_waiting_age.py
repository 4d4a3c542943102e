"""redis+list's ``inspect(topic).oldest_waiting_age`` when the message next out came
back (nacked, or its lease ran out): it waits wrapped as ``BKR<n>``, and its age is
still told from its publish time, not reported as None (no lag) while it waits."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import pytest

import brokerkit.aio
from brokerkit.backends.redis.list import RedisListBroker
from tests.conftest import RedisTarget
from tests.redis_stream_aio_support import run

Make = Callable[..., RedisListBroker]


@pytest.fixture
def make(redis_broker: Callable[..., Any]) -> Make:
    return functools.partial(redis_broker, "redis+list")


def test_a_nacked_message_next_out_has_a_waiting_age(make: Make) -> None:
    broker = make()
    published = time.time()
    broker.publish("t", "first")
    broker.publish("t", "second")
    with broker.subscribe("t", prefetch=1) as subscription:
        delivery = subscription.receive(timeout=5)
        assert delivery is not None and delivery.body == "first"
        delivery.nack()
        info = broker.inspect("t")
        assert info.length == 2
        age = info.oldest_waiting_age
        assert age is not None
        assert 0 <= age <= time.time() - published + 1


def test_the_asyncio_broker_tells_it_too(
    make: Make, redis_target: RedisTarget, prefix: str
) -> None:
    broker = make()
    published = time.time()
    broker.publish("t", "first")
    delivery = next(iter(broker.consume("t", timeout=5)))
    delivery.nack()

    async def main() -> None:
        async with brokerkit.aio.connect(redis_target.url("redis+list", prefix=prefix)) as aio:
            age = (await aio.inspect("t")).oldest_waiting_age
            assert age is not None
            assert 0 <= age <= time.time() - published + 1

    run(main())
