"""redis+list against a private redis-server: bookkeeping another program wrote in a
shape brokerkit never writes (a lease group naming no receipt or ever so many, a member
or field that is not UTF-8, an expiry field without a consumer) never blocks the topic:
a rescue, a consumer's fetch and ``inspect`` go on, and every message still arrives.

Before, a lease group ``<nonce>0+1000000000000000:<consumer>`` made the rescue script
build a receipt for each (it held the server, BUSY to every client, for hours), one of
``+0`` or ``+-3`` failed every rescue (and so every consumer's fetch) with a Lua error,
a member that is not UTF-8 failed them with ``UnicodeDecodeError``, and an expiry field
without ``:`` failed ``inspect``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

import brokerkit
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis_list


def _corrupt(client: redis.Redis, keys: Any, case: str) -> None:
    if case == "a group of 10**15 receipts":
        client.zadd(keys.deadlines, {"abcdefgh-0+1000000000000000:ghost": 0})
    elif case == "a group of 10**13 receipts":
        client.zadd(keys.deadlines, {"abcdefgh-0+10000000000000:ghost": 0})
    elif case == "a group of infinitely many receipts":
        client.zadd(keys.deadlines, {"abcdefgh-0+inf:ghost": 0})
    elif case == "a group of 10**13 receipts of a live batch":
        # the consumer holds a batch of that nonce: the group names no receipt past it
        client.hset(keys.fetches("ghost"), "abcdefgh-", "0")
        client.rpush(keys.batch("abcdefgh-", "ghost"), "lost")
        client.hset(keys.expiry, "abcdefgh-:ghost", "0.0")
        client.zadd(keys.deadlines, {"abcdefgh-0+10000000000000:ghost": 0})
    elif case == "a group of no receipts":
        client.zadd(keys.deadlines, {"abcdefgh-0+0:ghost": 0})
    elif case == "a group of minus three receipts":
        client.zadd(keys.deadlines, {"abcdefgh-5+-3:ghost": 0})
    elif case == "a group that is not UTF-8":
        client.zadd(keys.deadlines, {b"\xff\xfe-0+1:\xff": 0})
    elif case == "a consumer that is not UTF-8":
        client.zadd(keys.consumers, {b"\xff\xfe": 0})
    elif case == "an expiry field without a consumer":
        client.hset(keys.expiry, "garbage", "1")
    elif case == "an expiry field that is not UTF-8":
        client.hset(keys.expiry, b"ab-0:\xff", "1")
    else:
        raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "a group of 10**15 receipts",
        "a group of 10**13 receipts",
        "a group of infinitely many receipts",
        "a group of 10**13 receipts of a live batch",
        "a group of no receipts",
        "a group of minus three receipts",
        "a group that is not UTF-8",
        "a consumer that is not UTF-8",
        "an expiry field without a consumer",
        "an expiry field that is not UTF-8",
    ],
)
@pytest.mark.parametrize("max_deliveries", [None, 5])
def test_hostile_bookkeeping_never_blocks_the_topic(
    redis_server: RedisServer, case: str, max_deliveries: int | None
) -> None:
    # (a private server: before the fix a script ran on for hours; the socket timeout
    # turns that into a failure, and the fixture kills the server)
    url = redis_server.url("redis+list") + "?socket_timeout=20"
    options: dict[str, Any] = {"max_deliveries": max_deliveries} if max_deliveries else {}
    client = redis_server.client()
    with brokerkit.connect(url, **options) as broker:
        broker.publish_many("t", [1, 2, 3])
        _corrupt(client, broker._topic("t").keys, case)
        # (a dead-letter key of another type makes the rescue look at every due
        # lease before it writes: that look is bounded too)
        dead_letters = broker._topic("t").keys.dead_letters
        if max_deliveries:
            client.set(dead_letters, "not a list")
        broker.rescue("t")
        client.delete(dead_letters)
        info = broker.inspect("t")
        assert info.length >= 3
        subscription = broker.subscribe("t", prefetch=3)
        bodies = []
        while (delivery := subscription.receive(timeout=1)) is not None:
            bodies.append(delivery.body)
            delivery.ack()
        assert [b for b in bodies if b in (1, 2, 3)] == [1, 2, 3]
        assert set(bodies) - {1, 2, 3} <= {"lost"}
        broker.rescue("t")  # runs clean over what is left
        broker.inspect("t")
    client.close()


def test_a_group_past_its_batch_hands_back_what_the_batch_leased(
    redis_broker: Callable[..., Any], redis_client: redis.Redis
) -> None:
    """A group naming more receipts than its batch holds is read as the batch: its
    expired deliveries come back, once each."""
    broker = redis_broker("redis+list", visibility_timeout=30)
    broker.publish_many("t", ["a", "b", "c"])
    subscription = broker.subscribe("t", prefetch=3)
    first = subscription.receive(timeout=5)
    assert first is not None
    keys = broker._topic("t").keys
    nonce, _, consumer = first.receipt.partition(":")
    nonce = nonce.rstrip("0123456789")
    # its lease ran out, and its group now claims ever so many receipts
    redis_client.hset(keys.expiry, f"{nonce}:{consumer}", "0.0")
    redis_client.delete(keys.deadlines)
    redis_client.zadd(keys.deadlines, {f"{nonce}0+10000000000000:{consumer}": 0})
    assert broker.rescue("t") == 3
    assert broker.inspect("t").in_flight == 0
