"""redis+list: a batch of RESCUE_LEASES deliveries (fetched with prefetch RESCUE_LEASES)
goes back in one rescue call, its lease expired or its consumer dead.

Before, a batch cost a call's budget BATCH_COST besides its deliveries even when it fitted
in the budget whole: a group was split to ``budget - BATCH_COST`` receipts (98), so such a
batch took two calls (98, then 2), and a dead consumer's batch was cut the same way. Now
a group (a batch) that fits in what is left of the budget is taken whole; only one larger
than what is left is split. Counted calls, not durations."""

from __future__ import annotations

from typing import Any

import pytest

import brokerkit
from brokerkit.backends.redis.list import RedisListBroker
from brokerkit.backends.redis.list.upkeep_calls import RESCUE_LEASES, RESCUE_LIMIT, rescue_once
from tests.redis_server import RedisServer
from tests.test_list_review34_rescue_due_groups import _RAN_OUT
from tests.test_list_review34_rescue_many_batches import _back, _gone

pytestmark = pytest.mark.redis_list


def _one_batch(client: Any, holder: RedisListBroker) -> list[str]:
    """RESCUE_LEASES messages fetched in one batch by consumer C, which then stops
    renewing its leases: their bodies."""
    bodies = [f"m{i}" for i in range(RESCUE_LEASES)]
    holder.publish_many("t", bodies)
    subscription = holder.subscribe("t", prefetch=RESCUE_LEASES, consumer="C")
    deliveries = [subscription.receive(timeout=5) for _ in bodies]
    assert all(d is not None for d in deliveries)
    holder._suspend_renewals()
    keys = holder._topic("t").keys
    assert client.zcard(keys.deadlines) == 1  # one lease group: one batch
    return bodies


def _calls(rescuer: RedisListBroker) -> list[int]:
    """What each rescue call hands back, until one reports nothing more to do."""
    plan = rescuer._topic("t")
    moved = []
    for _ in range(5):
        reply = rescue_once(rescuer._client, rescuer._scripts["RESCUE"], plan, "", None)
        moved.append(int(reply[0]))
        if reply[3] < RESCUE_LIMIT:
            return moved
    raise AssertionError(f"the rescue never finished: {moved}")


def test_an_expired_batch_of_a_budget_goes_back_in_one_call(redis_server: RedisServer) -> None:
    client = redis_server.client()
    url = redis_server.url("redis+list")
    with brokerkit.connect(url, visibility_timeout=600) as holder:
        assert isinstance(holder, RedisListBroker)
        bodies = _one_batch(client, holder)
        keys = holder._topic("t").keys
        client.zrem(keys.consumers, "C")
        client.eval(_RAN_OUT, 2, keys.deadlines, keys.expiry)
        with brokerkit.connect(url, visibility_timeout=600) as rescuer:
            assert isinstance(rescuer, RedisListBroker)
            assert _calls(rescuer)[0] == RESCUE_LEASES  # before: [98, 2, 0]
            assert sorted(b for _, b in _back(client, rescuer)) == sorted(bodies)
            assert client.zcard(keys.deadlines) == 0
            assert not client.keys(keys.batches_prefix + "*")
            assert client.hlen(keys.expiry) == 0
    client.close()


def test_a_dead_consumers_batch_of_a_budget_goes_back_in_one_call(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    url = redis_server.url("redis+list")
    with brokerkit.connect(url, visibility_timeout=600) as holder:
        assert isinstance(holder, RedisListBroker)
        bodies = _one_batch(client, holder)
        keys = holder._topic("t").keys
        client.zadd(keys.consumers, {"C": 0})  # its heartbeat ended long ago
        with brokerkit.connect(url, visibility_timeout=600) as rescuer:
            assert isinstance(rescuer, RedisListBroker)
            assert _calls(rescuer) == [RESCUE_LEASES]  # before: [98, 2]
            assert sorted(b for _, b in _back(client, rescuer)) == sorted(bodies)
            _gone(client, rescuer, "C")
    client.close()
