"""How redis+list records a lease: the element as it came out of the queue in its
fetch's batch list, the batch's deadline and delivery time in ``expiry`` as
``<deadline>.<delivered>`` (a delivery extended by hand: a value of its own), a flag a
delivery in the consumer's fetches hash; and leases recorded by earlier versions (the
element in the consumer's lease hash under the receipt without its consumer, or
``<delivered>:<element>`` records under the whole receipt with ``<deadline>`` expiry
values) still settle, renew, inspect and come back intact."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import pytest
import redis

from brokerkit.backends.redis.list.plan import batch_runs
from brokerkit.exceptions import StaleDelivery

pytestmark = pytest.mark.redis_list

#: A raw element that reads like an earlier version's lease record: taken for one, it
#: would come back as b"abc".
LOOKALIKE = b"123:abc"


@pytest.fixture
def connect(redis_broker: Callable[..., Any], prefix: str) -> Callable[..., Any]:
    return functools.partial(redis_broker, "redis+list", queue_key=f"{prefix}-queue:*")


def _old_lease(
    client: redis.Redis, broker: Any, consumer: str, receipt: str, element: bytes, deadline: int
) -> None:
    """A lease as versions before this one recorded it."""
    keys = broker._topic("orders").keys
    client.hset(keys.leases(consumer), receipt, b"5:" + element)
    client.hset(keys.expiry, receipt, deadline)
    group = receipt.replace(":", "+1:", 1)
    client.zadd(keys.deadlines, {group: deadline})


def _holding_a_lookalike(
    connect: Callable[..., Any], client: redis.Redis, prefix: str
) -> tuple[str, Any, Any, Any]:
    """A broker (lease 30 s) holding the one :data:`LOOKALIKE` pushed on its queue:
    (the queue, the broker, the subscription, the delivery)."""
    queue = f"{prefix}-queue:orders"
    client.lpush(queue, LOOKALIKE)
    broker = connect(visibility_timeout=30)
    subscription = broker.subscribe("orders")
    delivery = subscription.receive(timeout=5)
    assert delivery is not None and delivery.payload == LOOKALIKE
    return queue, broker, subscription, delivery


def test_a_lease_records_the_element_in_its_batch_and_the_time_in_expiry(
    connect: Callable[..., Any], redis_client: redis.Redis, prefix: str
) -> None:
    queue, broker, subscription, delivery = _holding_a_lookalike(connect, redis_client, prefix)
    keys = broker._topic("orders").keys
    nonce, _, consumer = delivery.receipt.partition(":")
    nonce = nonce.rstrip("0123456789")
    assert consumer == subscription.consumer
    # the element as it came out of the queue, in its fetch's batch list
    batch = keys.batch(nonce, consumer)
    assert redis_client.lrange(batch, 0, -1) == [LOOKALIKE]
    assert redis_client.hgetall(keys.fetches(consumer)) == {nonce.encode(): b"0"}
    name = f"{nonce}:{consumer}"
    value = redis_client.hget(keys.expiry, name)
    match = re.fullmatch(rb"(\d+)\.(\d+)", value)
    assert match is not None, value
    deadline, delivered = int(match[1]), int(match[2])
    assert deadline - delivered == 30_000
    # extended by hand, all the batch leased: the batch's value moves, keeping the
    # delivery time
    delivery.extend(seconds=60)
    assert redis_client.hget(keys.fetches(consumer), nonce) == b"0"
    renewed = redis_client.hget(keys.expiry, name)
    assert renewed.endswith(b"." + match[2]) and int(renewed.split(b".")[0]) > deadline
    redis_client.hset(keys.expiry, delivery.receipt, renewed)  # as one of a bigger batch
    redis_client.hset(keys.fetches(consumer), nonce, b"2")
    # expired: the rescue hands back the element as it was, not cut at its colon
    redis_client.hset(keys.expiry, delivery.receipt, b"1.0")
    redis_client.zadd(keys.deadlines, {delivery.receipt: 1})
    assert broker.rescue("orders") == 1
    assert redis_client.lrange(queue, 0, -1) == [LOOKALIKE]
    assert redis_client.exists(batch, keys.fetches(consumer), keys.expiry) == 0


def test_a_dead_consumer_hands_back_both_kinds_of_lease_intact_oldest_next(
    connect: Callable[..., Any], redis_client: redis.Redis, prefix: str
) -> None:
    queue, broker, subscription, _ = _holding_a_lookalike(connect, redis_client, prefix)
    keys = broker._topic("orders").keys
    _old_lease(
        redis_client,
        broker,
        subscription.consumer,
        "ab-0:" + subscription.consumer,
        b"7:old",
        10**13,
    )
    assert broker.inspect("orders").in_flight == 2
    redis_client.zadd(keys.consumers, {subscription.consumer: 0})  # its heartbeat stopped
    assert broker.rescue("orders") == 2
    # delivered at 5 ms, the old one is the oldest: next out
    assert redis_client.lrange(queue, 0, -1) == [LOOKALIKE, b"7:old"]
    assert broker.inspect("orders").in_flight == 0


def test_an_earlier_versions_lease_is_extended_acked_and_inspected_as_it_was(
    connect: Callable[..., Any], redis_client: redis.Redis
) -> None:
    broker = connect(visibility_timeout=30)
    plan = broker._topic("orders")
    receipt = "ab-0:old"
    _old_lease(redis_client, broker, "old", receipt, LOOKALIKE, 10**13)
    keys = plan.keys_for(["old"])
    info = broker.inspect("orders")
    assert info.in_flight == 1 and info.oldest_in_flight_age is not None
    assert info.oldest_in_flight_age > 10**9  # delivered at 5 ms of the server's clock
    extend = broker._scripts["EXTEND"]
    assert extend(keys=keys, args=[*plan.common, 60_000, "set", *batch_runs([receipt])]) == []
    value = redis_client.hget(plan.keys.expiry, receipt)
    assert re.fullmatch(rb"\d+", value), value  # still the form its record needs
    assert redis_client.hget(plan.keys.leases("old"), receipt) == b"5:" + LOOKALIKE
    settle = broker._scripts["SETTLE"]
    assert settle(keys=keys, args=[*plan.common, "ack", *batch_runs([receipt])]) == []
    assert redis_client.exists(plan.keys.leases("old"), plan.keys.expiry) == 0


def test_an_earlier_versions_expired_lease_comes_back_intact(
    connect: Callable[..., Any], redis_client: redis.Redis, prefix: str
) -> None:
    queue = f"{prefix}-queue:orders"
    broker = connect(visibility_timeout=30)
    _old_lease(redis_client, broker, "old", "ab-0:old", LOOKALIKE, 1)
    assert broker.rescue("orders") == 1
    assert redis_client.lrange(queue, 0, -1) == [LOOKALIKE]
    again = broker.subscribe("orders").receive(timeout=5)
    assert again is not None and again.payload == LOOKALIKE and again.attempt == 2
    again.ack()
    assert redis_client.exists(broker._topic("orders").keys.attempts) == 0


def test_a_batch_whose_expiry_value_vanished_goes_back_on_the_late_ack(
    connect: Callable[..., Any], redis_client: redis.Redis, prefix: str
) -> None:
    # A value gone (or garbage) is a lease run out: the late ack hands the element back.
    queue, broker, subscription, delivery = _holding_a_lookalike(connect, redis_client, prefix)
    keys = broker._topic("orders").keys
    nonce = delivery.receipt.partition("-")[0] + "-"
    redis_client.hdel(keys.expiry, f"{nonce}:{subscription.consumer}")
    with pytest.raises(StaleDelivery):
        delivery.ack()
    assert redis_client.lrange(queue, 0, -1) == [LOOKALIKE]
    assert broker.inspect("orders").in_flight == 0
    assert redis_client.exists(keys.fetches(subscription.consumer)) == 0
    assert not redis_client.keys(keys.batches_prefix + "*")


def test_a_dead_consumers_batch_comes_back_but_for_what_was_settled(
    connect: Callable[..., Any], redis_client: redis.Redis, prefix: str
) -> None:
    queue = f"{prefix}-queue:orders"
    redis_client.lpush(queue, b"a", b"b", b"c", b"d")
    broker = connect(visibility_timeout=30)
    subscription = broker.subscribe("orders", prefetch=4)
    got = [subscription.receive(timeout=5) for _ in range(4)]
    _, b, c, _ = [x for x in got if x is not None]
    keys = broker._topic("orders").keys
    c.ack()  # settled: blank in the batch
    b.extend(seconds=60)  # a value of its own
    redis_client.zadd(keys.consumers, {subscription.consumer: 0})  # its heartbeat stopped
    assert broker.rescue("orders") == 3
    assert sorted(redis_client.lrange(queue, 0, -1)) == [b"a", b"b", b"d"]
    assert redis_client.exists(keys.expiry, keys.fetches(subscription.consumer)) == 0
    assert not redis_client.keys(keys.batches_prefix + "*")
