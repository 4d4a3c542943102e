"""A redis+list dead letter keeps its message's ``published_at`` exactly, as every other
backend does: the script that dead-letters re-encodes the envelope's header, and must
not round the time (Lua's cjson writes 14 significant digits, a float needs 17)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import pytest
import redis

import brokerkit

pytestmark = pytest.mark.redis_list

HOW = ["rejected", "max_deliveries"]


@pytest.fixture
def connect(redis_broker: Callable[..., Any]) -> Callable[..., Any]:
    return functools.partial(redis_broker, "redis+list", max_deliveries=1)


def _dead_letter(broker: brokerkit.Broker, how: str) -> tuple[brokerkit.Message, Any]:
    """Receive the next message of "orders", dead-letter it ``how``, and return it and
    its dead letter."""
    delivery = broker.subscribe("orders").receive(timeout=5)
    assert delivery is not None
    delivery.nack(requeue=how == "max_deliveries")  # max_deliveries=1: dead either way
    dead = broker.subscribe(broker.dead_letter_topic("orders")).receive(timeout=5)
    assert dead is not None
    dead.ack()
    return delivery.message, dead


@pytest.mark.parametrize("how", HOW)
def test_a_dead_letter_keeps_the_published_at_of_a_publish(
    connect: Callable[..., Any], how: str
) -> None:
    broker: brokerkit.Broker = connect()
    broker.publish("orders", {"n": 1}, headers={"k": "v"})
    message, dead = _dead_letter(broker, how)
    assert dead.message.published_at == message.published_at
    assert (dead.id, dead.body, dead.headers["k"]) == (message.id, {"n": 1}, "v")


#: Times that 14 significant digits do not keep, and times whose 17 digits are written
#: in other forms (0.10000000000000001, an exponent, a denormal, 0, a negative).
TIMES = [1700000000.1234567, 0.1, 1 / 3, 1e300, 5e-324, -1.5, 0]


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("ts", TIMES, ids=repr)
def test_a_dead_letter_keeps_the_time_another_program_wrote(
    connect: Callable[..., Any], redis_client: redis.Redis, how: str, ts: float
) -> None:
    broker: brokerkit.Broker = connect()
    queue = broker.inspect("orders").details["queue_key"]
    header = json.dumps({"id": "from-elsewhere", "ct": "text/plain", "ts": ts, "h": {}})
    redis_client.lpush(queue, b"BK1" + header.encode() + b"\nhello")
    message, dead = _dead_letter(broker, how)
    assert message.published_at == ts  # read as an envelope, not raw
    assert dead.message.published_at == ts
    assert (dead.id, dead.payload) == ("from-elsewhere", b"hello")
