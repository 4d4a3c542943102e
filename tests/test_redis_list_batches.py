"""What a redis+list batch leaves in Redis: a fetch of many keeps ``expiry`` a hash
table (in a listpack, every HSET, HMGET and HDEL of a batch scans the whole hash) and
writes exactly the receipts the client computes, whatever hundreds their sequence
numbers cross; an ack of a batch whose expiry values differ from one receipt to the
next reports exactly the stale ones."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
import redis

from brokerkit.exceptions import IncompatibleTopic, StaleDelivery

pytestmark = pytest.mark.redis_list


@pytest.fixture
def connect(redis_broker: Callable[..., Any]) -> Callable[..., Any]:
    return functools.partial(redis_broker, "redis+list")


def test_a_batch_fetch_keeps_expiry_a_hash_table_holding_only_its_receipts(
    connect: Callable[..., Any], redis_client: redis.Redis
) -> None:
    broker = connect()
    keys = broker._topic("orders").keys
    broker.publish_many("orders", [f"m{i}" for i in range(100)])
    subscription = broker.subscribe("orders", prefetch=100)
    got = [subscription.receive(timeout=5) for _ in range(100)]
    deliveries = [d for d in got if d is not None]
    assert [d.body for d in deliveries] == [f"m{i}" for i in range(100)]
    # 100 short entries would be a listpack by Redis's defaults
    assert redis_client.object("encoding", keys.expiry) == b"hashtable"
    receipts = {d.receipt.encode() for d in deliveries}
    assert set(redis_client.hkeys(keys.expiry)) == receipts
    fields = {r.partition(b":")[0] for r in receipts}
    assert set(redis_client.hkeys(keys.leases(subscription.consumer))) == fields
    broker.ack(*deliveries)
    assert redis_client.exists(keys.expiry, keys.leases(subscription.consumer)) == 0
    assert redis_client.exists(keys.deadlines) == 0


@pytest.mark.parametrize(
    ("first", "count"),
    [(0, 7), (0, 8), (95, 10), (99, 2), (100, 16), (190, 120), (1999, 30), (0, 600)],
)
def test_a_batchs_receipts_are_the_ones_the_client_computes(
    connect: Callable[..., Any], redis_client: redis.Redis, first: int, count: int
) -> None:
    broker = connect()
    plan = broker._topic("orders")
    keys = plan.keys_for(["c1"])
    redis_client.lpush(plan.keys.queue, *[f"e{i}" for i in range(count)])
    fetch = broker._scripts["FETCH"]
    out = fetch(keys=keys, args=[*plan.common, "c1", count, 30_000, "n0-", first])
    assert out == [f"e{i}".encode() for i in range(count)]
    names = [f"n0-{n}" for n in range(first, first + count)]
    records = redis_client.hgetall(plan.keys.leases("c1"))
    assert records == {n.encode(): f"e{i}".encode() for i, n in enumerate(names)}
    assert set(redis_client.hkeys(plan.keys.expiry)) == {f"{n}:c1".encode() for n in names}
    group = f"n0-{first}+{count}:c1".encode()
    assert redis_client.zrange(plan.keys.deadlines, 0, -1) == [group]
    settle = broker._scripts["SETTLE"]
    for start in range(0, count, 250):
        chunk = names[start : start + 250]
        assert settle(keys=keys, args=[*plan.common, "ack", *[f"{n}:c1" for n in chunk]]) == []
    assert redis_client.exists(plan.keys.expiry, plan.keys.leases("c1")) == 0


def test_a_batch_whose_lease_hash_cannot_be_written_loses_nothing(
    connect: Callable[..., Any], redis_client: redis.Redis
) -> None:
    broker = connect()
    keys = broker._topic("orders").keys
    broker.publish_many("orders", [f"m{i}" for i in range(20)])
    queued = redis_client.lrange(keys.queue, 0, -1)
    subscription = broker.subscribe("orders", prefetch=20)
    redis_client.set(keys.leases(subscription.consumer), "not a hash")
    with pytest.raises(IncompatibleTopic):
        subscription.receive(timeout=0.1)
    # popped, then put back as they were: nothing leased, nothing lost, order kept
    assert redis_client.lrange(keys.queue, 0, -1) == queued
    assert redis_client.exists(keys.expiry, keys.deadlines) == 0


def test_an_ack_of_leases_in_every_state_reports_exactly_the_stale_ones(
    connect: Callable[..., Any], redis_client: redis.Redis
) -> None:
    broker = connect(visibility_timeout=30)
    keys = broker._topic("orders").keys
    broker.publish_many("orders", [f"m{i}" for i in range(10)])
    subscription = broker.subscribe("orders", prefetch=10)
    got = [subscription.receive(timeout=5) for _ in range(10)]
    deliveries = [d for d in got if d is not None]
    assert len(deliveries) == 10
    live = redis_client.hget(keys.expiry, deliveries[0].receipt)
    # live ones (the same value) between ones expired, unreadable, gone, and one live in
    # the form an earlier version wrote: each is judged on its own value
    redis_client.hset(keys.expiry, deliveries[1].receipt, b"1.5")
    redis_client.hset(keys.expiry, deliveries[3].receipt, b"garbage")
    redis_client.hdel(keys.expiry, deliveries[5].receipt)
    redis_client.hset(keys.expiry, deliveries[7].receipt, live.partition(b".")[0])
    redis_client.hset(keys.expiry, deliveries[8].receipt, b"1.5")
    with pytest.raises(StaleDelivery) as caught:
        broker.ack(*deliveries)
    stale = {d.receipt for d in caught.value.deliveries}
    assert stale == {deliveries[i].receipt for i in (1, 3, 5, 8)}
    # each handed back, its attempt counted
    assert redis_client.llen(keys.queue) == 4
    again = [subscription.receive(timeout=5) for _ in range(4)]
    assert sorted((d.body, d.attempt) for d in again if d is not None) == [
        ("m1", 2),
        ("m3", 2),
        ("m5", 2),
        ("m8", 2),
    ]
    broker.ack(*[d for d in again if d is not None])
    assert redis_client.exists(keys.expiry, keys.leases(subscription.consumer)) == 0
