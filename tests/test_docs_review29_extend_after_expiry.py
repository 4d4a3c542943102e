"""docs/concepts.md: ``extend`` of a delivery whose lease ran out raises StaleDelivery,
on redis+stream only once another member of the group claimed the message: until
then the entry is still pending under its holder, and ``extend`` renews it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

import brokerkit
from brokerkit import StaleDelivery
from tests.redis_server import wait_until


def test_memory_refuses_it_once_the_lease_ran_out() -> None:
    clock = brokerkit.ManualClock()
    with (
        brokerkit.connect("memory://", clock=clock, visibility_timeout=1) as broker,
        broker.subscribe("jobs", group="g") as subscription,
    ):
        broker.publish("jobs", "work")
        delivery = subscription.receive(timeout=0)
        assert delivery is not None
        clock.advance(2)
        with pytest.raises(StaleDelivery):
            delivery.extend(5)


def test_redis_stream_renews_it_until_another_member_claims_it(
    redis_broker: Callable[..., Any], redis_client: redis.Redis, prefix: str
) -> None:
    holder = redis_broker("redis+stream", visibility_timeout=0.5)
    with holder.subscribe("jobs", group="g") as mine:
        holder.publish("jobs", "work")
        delivery = mine.receive(timeout=5)
        assert delivery is not None
        holder._suspend_renewals()  # a hung holder: its lease runs out, nobody claims it

        def ran_out() -> bool:
            pending = redis_client.xpending_range(f"{prefix}:{{jobs}}", "g", "-", "+", 1)
            return bool(pending) and int(pending[0]["time_since_delivered"]) > 600

        wait_until(ran_out, 10, "the lease never ran out")
        delivery.extend(5)  # no StaleDelivery: nobody claimed it
        other = redis_broker("redis+stream", visibility_timeout=0.5)
        with other.subscribe("jobs", group="g") as theirs:
            assert theirs.receive(timeout=0.3) is None  # the renewed lease holds
        delivery.ack()
