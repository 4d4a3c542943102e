"""redis+list: a lease group that claims ever so many receipts (another program's
doing, or a corrupted member) of a consumer holding leases an earlier version recorded
(its ``leases:`` hash) is read as the leases that hash holds, not walked receipt by
receipt, 100 a call.

Before, a group ``ab-0+10000000000000:old`` next to one such lease made every rescue
call look at 100 of its 10^13 receipts and report more to do: ``rescue()`` and every
consumer's maintenance before its fetch called again and again (for years), so no
consumer of the topic ever fetched and its expired lease never came back."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
import redis

from brokerkit.backends.redis.list import RedisListBroker
from brokerkit.backends.redis.list.upkeep_calls import RESCUE_LIMIT

pytestmark = pytest.mark.redis_list

LOOKALIKE = b"an element an earlier version leased"


@pytest.fixture
def connect(redis_broker: Callable[..., Any]) -> Callable[..., RedisListBroker]:
    return functools.partial(redis_broker, "redis+list")


def _rescued_in_a_few_calls(broker: RedisListBroker, topic: str) -> int:
    """What rescue calls hand back until one reports nothing more to do (at most 5)."""
    plan = broker._topic(topic)
    total = 0
    for _ in range(5):
        moved, _, _, visited, *_ = broker._rescue(plan, "", None)
        total += int(moved)
        if visited < RESCUE_LIMIT:
            return total
    raise AssertionError("the rescue never finished: it reports more to do at every call")


@pytest.mark.parametrize("form", ["short field", "whole receipt"])
@pytest.mark.parametrize("claims", [10**13, 10**6, 1000])
def test_a_huge_group_of_an_earlier_versions_leases_never_jams_the_rescue(
    connect: Callable[..., RedisListBroker], redis_client: redis.Redis, form: str, claims: int
) -> None:
    broker = connect(visibility_timeout=30)
    keys = broker._topic("t").keys
    # an expired lease at index 7 and a live one at index 9, as an earlier version
    # recorded them, and one group claiming `claims` receipts from index 0
    for index, deadline in ((7, 1), (9, 2**50)):
        receipt = f"ab-{index}:old"
        if form == "short field":
            redis_client.hset(keys.leases("old"), f"ab-{index}", LOOKALIKE + b"%d" % index)
            redis_client.hset(keys.expiry, receipt, f"{deadline}.5")
        else:
            redis_client.hset(keys.leases("old"), receipt, b"5:" + LOOKALIKE + b"%d" % index)
            redis_client.hset(keys.expiry, receipt, deadline)
    redis_client.zadd(keys.deadlines, {f"ab-0+{claims}:old": 0})
    assert _rescued_in_a_few_calls(broker, "t") == 1
    assert redis_client.lrange(keys.queue, 0, -1) == [LOOKALIKE + b"7"]
    # the live one is still indexed for a later rescue, by its own deadline
    assert redis_client.zrangebyscore(keys.deadlines, 0, 2**49) == []
    assert redis_client.zcard(keys.deadlines) == 1
    assert broker.rescue("t") == 0
    with broker.subscribe("t") as subscription:
        delivery = subscription.receive(timeout=5)
        assert delivery is not None and delivery.payload == LOOKALIKE + b"7"
        delivery.ack()
