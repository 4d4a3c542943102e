"""redis+list: a publish whose ``maxlen`` trims messages that came back (nacked, or
their lease ran out: counted in the topic's ``returned`` key, each to go out alone)
lowers that count by those it dropped.

Before, the count stayed: the fresh messages published in their place went out one a
fetch as if each had come back (a consumer of ``prefetch=3`` got three fetches of one
message instead of one of three), until the stale count ran down."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import pytest
import redis

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis.list import RedisListBroker
from tests.conftest import RedisTarget
from tests.redis_cluster import RedisClusterSet
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis_list


@pytest.fixture
def connect(redis_broker: Callable[..., Any]) -> Callable[..., RedisListBroker]:
    return functools.partial(redis_broker, "redis+list")


def _nonce(receipt: str) -> str:
    return receipt.partition(":")[0].rstrip("0123456789")


def _nack_all(broker: RedisListBroker, topic: str, n: int) -> None:
    subscription = broker.subscribe(topic, prefetch=n)
    got = [subscription.receive(timeout=5) for _ in range(n)]
    for delivery in got:
        assert delivery is not None
        delivery.nack()
    subscription.close()


@pytest.mark.parametrize("kept", [0, 1])
def test_a_trim_that_drops_returned_messages_lowers_their_count(
    connect: Callable[..., RedisListBroker], redis_client: redis.Redis, kept: int
) -> None:
    broker = connect(maxlen=3)
    broker.publish_many("t", ["a", "b", "c"])
    _nack_all(broker, "t", 3)  # they wait at the head, counted
    returned = broker._topic("t").keys.returned
    assert int(redis_client.get(returned) or 0) == 3
    # drops the 3 - kept oldest: returned ones
    fresh = [f"new{i}" for i in range(3 - kept)]
    broker.publish_many("t", fresh)
    assert int(redis_client.get(returned) or 0) == kept
    subscription = broker.subscribe("t", prefetch=3)
    got = [subscription.receive(timeout=5) for _ in range(3)]
    assert all(d is not None for d in got)
    assert [d.body for d in got if d is not None] == ["a"][
        :kept
    ] + fresh  # a was nacked first: deepest
    # the one that came back (if kept) alone, then the fresh ones in one batch
    nonces = [_nonce(d.receipt) for d in got if d is not None]
    assert len(set(nonces[kept:])) == 1
    assert kept == 0 or nonces[0] != nonces[1]
    broker.ack(*[d for d in got if d is not None])
    subscription.close()


def test_a_trim_of_fresh_messages_leaves_the_count(
    connect: Callable[..., RedisListBroker], redis_client: redis.Redis
) -> None:
    """Returned messages at the head survive a trim that drops none of them."""
    broker = connect(maxlen=4)
    broker.publish_many("t", ["a"])
    _nack_all(broker, "t", 1)
    returned = broker._topic("t").keys.returned
    broker.publish_many("t", ["b", "c", "d"])
    assert int(redis_client.get(returned) or 0) == 1
    broker.publish("t", "e")  # drops "a", the returned one
    assert redis_client.get(returned) is None
    broker.publish("t", "f")  # drops "b"
    assert redis_client.get(returned) is None
    got = list(broker.consume("t", prefetch=10, timeout=0.5))
    assert [d.body for d in got] == ["c", "d", "e", "f"]
    assert len({_nonce(d.receipt) for d in got}) == 1
    broker.ack(*got)


def test_a_server_that_lost_the_script_still_trims(redis_server: RedisServer) -> None:
    """After SCRIPT FLUSH the publish's transaction pushes, and the trim follows."""
    client = redis_server.client()
    with brokerkit.connect(redis_server.url("redis+list"), maxlen=2) as broker:
        broker.publish_many("t", ["a"])
        _nack_all(broker, "t", 1)
        client.script_flush()
        broker.publish_many("t", ["b", "c"])
        keys = broker._topic("t").keys
        assert client.lrange(keys.queue, 0, -1)[0].endswith(b"\nc")
        assert client.llen(keys.queue) == 2
        assert client.get(keys.returned) is None
    client.close()


@pytest.mark.parametrize("replicas", [None, "1"])
def test_a_cluster_trims_and_lowers_the_count(
    redis_cluster: RedisClusterSet, prefix: str, replicas: str | None
) -> None:
    options = {"replicas": replicas, "replica_timeout": "5"} if replicas else {}
    url = redis_cluster.url("redis+list", prefix=prefix, maxlen="2", **options)
    with brokerkit.connect(url) as broker:
        broker.publish_many("t", ["a"])
        _nack_all(broker, "t", 1)
        broker.publish_many("t", ["b", "c"])
        got = list(broker.consume("t", prefetch=10, timeout=0.5))
        assert [d.body for d in got] == ["b", "c"]
        assert len({_nonce(d.receipt) for d in got}) == 1
        broker.ack(*got)


def test_the_trim_reads_no_element_and_carries_no_preamble() -> None:
    """Issue 18: no body is copied into Lua, and a bounded publish pays for a trim
    only. Before, TRIM read every dropped element that came back (``LRANGE``) while the
    ``attempts`` hash held any count, and carried the preamble (about 5 us of server
    time more on every bounded publish)."""
    from brokerkit.backends.redis.list import scripts

    assert scripts.PREAMBLE.strip() not in scripts.TRIM
    for command in ("LRANGE", "LINDEX", "LPOP", "RPOP", "HDEL", "sha1hex", "ATTEMPTS"):
        assert command not in scripts.TRIM
    assert "KEYS[3]" not in scripts.TRIM


def test_a_trim_reads_nothing_a_raw_element_s_count_stays(
    connect: Callable[..., RedisListBroker], redis_server: RedisServer
) -> None:
    """A raw element that came back and is dropped by the trim leaves its count in
    ``attempts`` (docs/backends/redis-list.md): the trim runs LTRIM, and no command
    that reads an element, whatever the hash holds."""
    client = redis_server.client()
    with brokerkit.connect(redis_server.url("redis+list"), maxlen=1, raw=True) as broker:
        broker.publish("t", b"same")
        _nack_all(broker, "t", 1)
        attempts = broker._topic("t").keys.attempts
        assert client.hlen(attempts) == 1
        client.config_resetstat()
        broker.publish("t", b"other")  # drops "same"
        calls = {k: v["calls"] for k, v in client.info("commandstats").items()}
        assert calls.get("cmdstat_ltrim") == 1
        for read in ("lrange", "lindex", "hdel", "hlen"):
            assert f"cmdstat_{read}" not in calls, calls
        assert client.hlen(attempts) == 1  # the count stays
        assert client.get(broker._topic("t").keys.returned) is None
        got = list(broker.consume("t", prefetch=10, timeout=0.5))
        assert [(d.payload, d.attempt) for d in got] == [(b"other", 1)]
        broker.ack(*got)
        # an identical payload pushed later goes out as a first attempt, but its
        # count goes on from the stale one: nacked, it comes back as the third
        broker.publish("t", b"same")
        subscription = broker.subscribe("t")
        first = subscription.receive(timeout=5)
        assert first is not None and (first.payload, first.attempt) == (b"same", 1)
        first.nack()
        again = subscription.receive(timeout=5)
        assert again is not None and (again.payload, again.attempt) == (b"same", 3)
        again.ack()  # an ack clears it
        subscription.close()
        assert client.exists(attempts) == 0
    client.close()


@pytest.mark.parametrize("count", [b"2.5", b"inf", b"nan", b"-3", b"x", b"99999999999999999999"])
def test_a_count_another_program_broke_never_fails_the_publish(
    connect: Callable[..., RedisListBroker], redis_client: redis.Redis, count: bytes
) -> None:
    broker = connect(maxlen=2)
    broker.publish_many("t", ["a", "b"])
    redis_client.set(broker._topic("t").keys.returned, count)
    broker.publish_many("t", ["c", "d"])
    got = list(broker.consume("t", prefetch=10, timeout=0.5))
    assert sorted(d.body for d in got) == ["c", "d"]
    broker.ack(*got)


def test_the_asyncio_broker_trims_and_lowers_the_count(
    redis_target: RedisTarget, prefix: str, redis_client: redis.Redis
) -> None:
    async def scenario() -> None:
        broker = await brokerkit.aio.connect(
            redis_target.url("redis+list"), prefix=prefix, maxlen=2
        )
        try:
            await broker.publish("t", "a")
            subscription = await broker.subscribe("t")
            delivery = await subscription.receive(timeout=5)
            assert delivery is not None
            await delivery.nack()
            await subscription.close()
            await broker.publish_many("t", ["b", "c"])
            assert redis_client.get(broker._topic("t").keys.returned) is None
            subscription = await broker.subscribe("t", prefetch=10)
            got = [await subscription.receive(timeout=5) for _ in range(2)]
            assert [d.body for d in got if d is not None] == ["b", "c"]
            assert len({_nonce(d.receipt) for d in got if d is not None}) == 1
            await broker.ack(*[d for d in got if d is not None])
            await subscription.close()
        finally:
            await broker.close()

    asyncio.run(asyncio.wait_for(scenario(), 120))
