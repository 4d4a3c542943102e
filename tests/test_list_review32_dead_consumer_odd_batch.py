"""redis+list: a dead consumer whose fetches hash holds a field that is no nonce
brokerkit writes (another program's: no ``-`` at its end, or digits after it) is
still rescued: what it held comes back, its odd batch's element too, and it is no
longer listed.

Before, the rescue declared each batch by a receipt made of the field, read back as
another batch's name for such a field: the script found a batch it was not given and
left the consumer alone, at every rescue. Its leases came back only one by one as their
own deadlines passed (one extended by hand for an hour waited the hour, not the
heartbeat), and the consumer stayed listed as dead for ever, every rescue making a
second call for it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
import redis

from brokerkit.backends.redis.list import RedisListBroker

pytestmark = pytest.mark.redis_list


@pytest.fixture
def connect(redis_broker: Callable[..., Any]) -> Callable[..., RedisListBroker]:
    return functools.partial(redis_broker, "redis+list")


@pytest.mark.parametrize("field", ["garbage", "a-b", "ab5", "ab-7"])
def test_a_dead_consumer_with_an_odd_fetches_field_is_rescued(
    connect: Callable[..., RedisListBroker], redis_client: redis.Redis, field: str
) -> None:
    holder = connect(visibility_timeout=30)
    holder.publish_many("t", ["a", "b"])
    subscription = holder.subscribe("t", prefetch=2, consumer="ghost")
    held = [subscription.receive(timeout=5) for _ in range(2)]
    assert all(d is not None for d in held)
    for delivery in held:
        assert delivery is not None
        delivery.extend(3600)  # its lease alone would keep them for an hour
    holder._keeper.stop()  # it hangs: no renewal, no heartbeat from now on
    keys = holder._topic("t").keys
    redis_client.hset(keys.fetches("ghost"), field, "0")
    redis_client.rpush(keys.batch(field, "ghost"), "lost")
    redis_client.hset(keys.expiry, f"{field}:ghost", "99999999999999.0")
    redis_client.zadd(keys.consumers, {"ghost": 0})  # its heartbeat ran out
    rescuer = connect(visibility_timeout=30)
    assert rescuer.rescue("t") == 3
    assert redis_client.zscore(keys.consumers, "ghost") is None
    bodies = sorted(d.body for d in rescuer.consume("t", prefetch=10, timeout=0.5))
    assert bodies == ["a", "b", "lost"]
