"""redis+pubsub: ``broker.gaps(x)`` refuses what is not a subscription of that broker
with the library's own error, naming what it takes; anything but a subscription
raised a bare AttributeError."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis.pubsub import AsyncRedisPubSubBroker, RedisPubSubBroker
from brokerkit.exceptions import DeliveryError
from tests.redis_server import RedisServer

NOT_SUBSCRIPTIONS = [None, "t", object(), 42]
REFUSED = r"gaps\(\) takes a subscription of"


def _connect(server: RedisServer) -> RedisPubSubBroker:
    broker = brokerkit.connect(server.url("redis+pubsub"))
    assert isinstance(broker, RedisPubSubBroker)
    return broker


@pytest.mark.parametrize("thing", NOT_SUBSCRIPTIONS, ids=lambda thing: type(thing).__name__)
def test_gaps_of_something_else_is_refused(redis_server: RedisServer, thing: Any) -> None:
    with _connect(redis_server) as broker, pytest.raises(DeliveryError, match=REFUSED):
        broker.gaps(thing)


def test_gaps_of_another_brokers_subscription_is_refused(redis_server: RedisServer) -> None:
    with _connect(redis_server) as broker, _connect(redis_server) as other:
        subscription = other.subscribe("t")
        assert other.gaps(subscription) == ()
        with pytest.raises(DeliveryError, match=REFUSED):
            broker.gaps(subscription)


def test_asyncio_refuses_the_same(redis_server: RedisServer) -> None:
    async def main() -> None:
        broker = await brokerkit.aio.connect(redis_server.url("redis+pubsub"))
        assert isinstance(broker, AsyncRedisPubSubBroker)
        async with broker:
            thing: Any = object()
            with pytest.raises(DeliveryError, match=REFUSED):
                broker.gaps(thing)

    asyncio.run(main())


@pytest.mark.parametrize("thing", ["t" * 100_000, list(range(100_000))], ids=["str", "list"])
def test_a_huge_argument_is_shown_short(redis_server: RedisServer, thing: Any) -> None:
    with _connect(redis_server) as broker, pytest.raises(DeliveryError, match=REFUSED) as info:
        broker.gaps(thing)
    assert len(str(info.value)) < 300, str(info.value)[:300]
