"""``Broker.topics()`` and ``TopicInfo.oldest_waiting_age`` on every durable backend."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from tests.kombu_rabbitmq import kombu_broker, rabbitmq  # noqa: F401 (fixtures)


def check_listing_and_age(broker: Any) -> None:
    """Two topics and a dead-letter topic listed; the age of what waits, None once
    nothing waits for the group that read it."""
    before = time.time()
    broker.publish("orders.eu", "one")
    broker.publish("audit", "two")
    for delivery in broker.consume("audit", group="g", timeout=2, limit=1):
        delivery.nack(requeue=False)
    listed = broker.topics()
    assert listed == sorted(listed)
    # "audit" itself holds nothing on redis+list once its one message is dead-lettered
    # (no groups are kept there); elsewhere its group keeps it listed.
    assert {"audit.dlq", "orders.eu"} <= set(listed) <= {"audit", "audit.dlq", "orders.eu"}
    age = broker.inspect("orders.eu").oldest_waiting_age
    assert age is not None
    # On the server's clock (Redis) or the publisher's: generous, for clock skew.
    assert -1.0 <= age <= time.time() - before + 1.0
    assert broker.inspect("audit").oldest_waiting_age is None  # the one group read it all


def test_memory() -> None:
    with brokerkit.connect(f"memory://topics-{uuid.uuid4().hex}") as broker:
        assert broker.topics() == []
        check_listing_and_age(broker)


def test_memory_age_follows_the_group_furthest_behind() -> None:
    with brokerkit.connect(f"memory://topics-{uuid.uuid4().hex}") as broker:
        first = broker.publish("t", 1)
        broker.publish("t", 2)
        ahead = broker.subscribe("t", group="ahead")
        behind = broker.subscribe("t", group="behind")
        for delivery in (ahead.receive(0), ahead.receive(0)):
            assert delivery is not None
            delivery.ack()
        info = broker.inspect("t")
        assert info.oldest_waiting_age is not None
        got = behind.receive(0)
        assert got is not None and got.id == first
        got.ack()
        behind.receive(0).ack()  # type: ignore[union-attr]
        assert broker.inspect("t").oldest_waiting_age is None
        ahead.close()
        behind.close()


def test_memory_async() -> None:
    async def main() -> list[str]:
        async with brokerkit.aio.connect(f"memory://topics-{uuid.uuid4().hex}") as broker:
            await broker.publish("b", 1)
            await broker.publish("a", 1)
            return await broker.topics()

    assert asyncio.run(main()) == ["a", "b"]


@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream"])
def test_redis(redis_broker: Callable[..., Any], scheme: str) -> None:
    broker = redis_broker(scheme)
    assert broker.topics() == []
    check_listing_and_age(broker)
    other = redis_broker(scheme, prefix=f"other-{uuid.uuid4().hex[:8]}")
    assert other.topics() == []  # another prefix is another set of topics


def test_nats(nats_url: str, nats_prefix: str) -> None:
    with brokerkit.connect(nats_url, prefix=nats_prefix) as broker:
        check_listing_and_age(broker)


def test_kombu_amqp_says_it_cannot_list(kombu_broker: Callable[..., Any]) -> None:  # noqa: F811
    broker = kombu_broker()
    with pytest.raises(brokerkit.Unsupported, match="cannot list its topics"):
        broker.topics()
    broker.publish("t", 1)
    assert broker.inspect("t").oldest_waiting_age is None  # AMQP cannot peek
