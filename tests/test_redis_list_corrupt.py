"""redis+list against a real redis-server: corrupt bookkeeping (a lease, deadline or
group record that brokerkit did not write that way) never blocks a topic: it is read as
expired and handed back, and every message still arrives."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
import redis

pytestmark = pytest.mark.redis_list


@pytest.fixture
def make(redis_broker: Callable[..., Any]) -> Callable[..., Any]:
    return functools.partial(redis_broker, "redis+list")


def _corrupt(client: redis.Redis, keys: Any, case: str) -> None:
    if case == "a deadline group that is not one":
        client.zadd(keys.deadlines, {"garbage": 0})
    elif case == "a deadline that is not a number":
        client.hset(keys.expiry, "ab-0:ghost", "not-a-number")
        client.hset(keys.leases("ghost"), "ab-0:ghost", "0:lost")
        client.zadd(keys.deadlines, {"ab-0+1:ghost": 0})
    elif case == "a lease record that is not one":
        client.hset(keys.leases("ghost"), "ab-0:ghost", "garbage")
        client.hset(keys.expiry, "ab-0:ghost", 0)
        client.zadd(keys.deadlines, {"ab-0+1:ghost": 0})
    elif case == "a dead consumer holding garbage":
        client.zadd(keys.consumers, {"ghost": 0})
        client.hset(keys.leases("ghost"), "x:ghost", "garbage")


@pytest.mark.parametrize(
    "case",
    [
        "a deadline group that is not one",
        "a deadline that is not a number",
        "a lease record that is not one",
        "a dead consumer holding garbage",
    ],
)
def test_corrupt_bookkeeping_never_blocks_the_topic(
    make: Callable[..., Any], redis_client: redis.Redis, case: str
) -> None:
    broker = make(visibility_timeout=30)
    broker.publish_many("t", [1, 2, 3])
    _corrupt(redis_client, broker._topic("t").keys, case)
    subscription = broker.subscribe("t", prefetch=3)
    bodies = []
    while (delivery := subscription.receive(timeout=1)) is not None:
        bodies.append(delivery.body)
        delivery.ack()
    # The three messages, and whatever a corrupt lease record held, handed back raw.
    assert [b for b in bodies if b in (1, 2, 3)] == [1, 2, 3]
    assert set(bodies) - {1, 2, 3} <= {"garbage", "lost"}
    broker.rescue("t")  # runs clean over what is left
    assert broker.inspect("t").in_flight == 0
