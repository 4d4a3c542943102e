"""redis+list against elements other programs wrote in shapes brokerkit does not read:
each is delivered as a raw message, can be acked or dead-lettered (keeping the id,
payload and content type the consumer saw), and never jams the queue behind it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
import redis

from brokerkit.backends.redis.list import RedisListBroker


@pytest.fixture
def connect(redis_broker: Callable[..., Any]) -> Callable[..., RedisListBroker]:
    """``connect(**options) -> RedisListBroker`` under this test's prefix; all closed after."""
    return functools.partial(redis_broker, "redis+list")


BROKEN = [
    b'BK1{"id":"x","ts":"abc"}\nhello',  # a time that is no number
    b'BK1{"id":7,"ct":"text/plain"}\nhello',  # an id that is no string
    b'BK1{"id":"x","ct":null}\nhello',
    b'BK1{"id":"x","h":{"retries":3}}\nhello',  # a header value that is no string
    b'BK1{"id":"x","h":"yes"}\nhello',
    b'BK1{"id":"","ts":1}\nhello',
    b"BK1{not json}\nhello",
    b'BK1["id","x"]\nhello',
    b"BK1 no header line",
    b'BK1{"id":"x","ts":"abc"}\n\xff\xfe',  # and a payload that is no text
]


@pytest.mark.parametrize("settle", ["ack", "reject", "max_deliveries"])
@pytest.mark.parametrize("element", BROKEN, ids=range(len(BROKEN)))
def test_an_element_with_a_broken_envelope_is_delivered_raw_and_jams_nothing(
    connect, redis_client: redis.Redis, element: bytes, settle: str
) -> None:
    broker = connect(max_deliveries=1)
    queue = broker.inspect("orders").details["queue_key"]
    redis_client.lpush(queue, element)
    good = broker.publish("orders", "good")
    subscription = broker.subscribe("orders")
    poison = subscription.receive(timeout=5)
    assert poison is not None
    assert (poison.payload, poison.attempt, poison.headers) == (element, 1, {})
    assert poison.id.startswith("raw-")
    if settle == "ack":
        poison.ack()
    else:
        poison.nack(requeue=settle == "max_deliveries")  # max_deliveries=1: dead either way
        dead = broker.subscribe(broker.dead_letter_topic("orders")).receive(timeout=5)
        assert dead is not None
        seen = (poison.id, poison.payload, poison.content_type)
        assert (dead.id, dead.payload, dead.content_type) == seen
        reason = "rejected" if settle == "reject" else "max_deliveries"
        assert dead.headers["x-dead-letter-reason"] == reason
        assert dead.headers["x-original-topic"] == "orders"
        dead.ack()
    behind = subscription.receive(timeout=5)
    assert behind is not None and (behind.id, behind.body) == (good, "good")
    behind.ack()
    info = broker.inspect("orders")
    assert (info.length, info.in_flight) == (0, 0)
