"""redis+list against a real redis-server: keys, receipts, rescue, raw elements, errors.

The contract suite (tests/contracts/test_redis_list_contract.py) checks the shared
promises; these tests check what is particular to the list backend.
"""

from __future__ import annotations

import functools
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

import brokerkit
from brokerkit.backends.redis.list import RedisListBroker
from brokerkit.exceptions import IncompatibleTopic, InvalidMessage, InvalidOption
from tests.conftest import RedisTarget
from tests.redis_server import RedisServer


@pytest.fixture
def connect(redis_broker: Callable[..., Any]) -> Callable[..., RedisListBroker]:
    """``connect(**options) -> RedisListBroker`` under this test's prefix; all closed after."""
    return functools.partial(redis_broker, "redis+list")


def keys_under(client: redis.Redis, prefix: str) -> set[bytes]:
    return set(client.scan_iter(match=f"{prefix}:*", count=1000))


def wait_for_server_time_past_deadlines(client: redis.Redis, expiry_key: str) -> None:
    """Poll (with a deadline) until the server's clock is past every lease deadline."""
    deadlines = [int(value.split(b".")[0]) for value in client.hvals(expiry_key)]
    assert deadlines, "no lease was recorded"
    limit = time.monotonic() + 10
    while True:
        seconds, micros = client.time()
        if seconds * 1000 + micros // 1000 > max(deadlines):
            return
        assert time.monotonic() < limit, "the server's clock never passed the lease deadline"
        time.sleep(0.02)


# -- options and keys -----------------------------------------------------------


def test_unknown_option_lists_the_valid_ones(redis_target: RedisTarget) -> None:
    with pytest.raises(InvalidOption) as caught:
        brokerkit.connect(redis_target.url("redis+list", visibility_timout="3"))
    message = str(caught.value)
    assert "did you mean 'visibility_timeout'" in message
    for name in ("raw", "queue_key", "maxlen", "prefix", "max_deliveries"):
        assert name in message


def test_driver_arguments_pass_through_to_redis_py(redis_target: RedisTarget, prefix: str) -> None:
    url = redis_target.url("redis+list", prefix=prefix, socket_timeout="7", client_name="bk-drv")
    with brokerkit.connect(url) as broker:
        broker.publish("orders", "x")
        names = [c["name"] for c in redis_target.client().client_list()]
        assert "bk-drv" in names
        broker.purge("orders")


def test_bad_queue_key_template_is_refused(redis_target: RedisTarget) -> None:
    with pytest.raises(InvalidOption, match="exactly one"):
        brokerkit.connect(redis_target.url("redis+list", queue_key="queue:orders"))


def test_every_key_of_a_topic_shares_its_hash_tag(
    connect, redis_client: redis.Redis, prefix: str
) -> None:
    broker = connect(max_deliveries=1)
    broker.publish_many("orders", ["a", "b", "c"])
    subscription = broker.subscribe("orders", consumer="c1")
    first = subscription.receive(timeout=5)
    assert first is not None
    first.nack(requeue=False)  # to the dead letters
    assert subscription.receive(timeout=5) is not None  # leased, unsettled
    # "c" as a BLMOVE leaves it in c1's processing list, before its lease is recorded
    redis_client.lmove(f"{prefix}:{{orders}}", f"{prefix}:{{orders}}:processing:c1")
    keys = {k.decode() for k in keys_under(redis_client, prefix)}
    (batch,) = [k for k in keys if k.startswith(f"{prefix}:{{orders}}:batch:")]
    assert batch.endswith(":c1")  # the list of the second fetch's one element
    assert keys == {
        f"{prefix}:{{orders}}.dlq",
        f"{prefix}:{{orders}}:processing:c1",
        f"{prefix}:{{orders}}:fetches:c1",
        batch,
        f"{prefix}:{{orders}}:deadlines",
        f"{prefix}:{{orders}}:expiry",
        f"{prefix}:{{orders}}:consumers",
    }


def test_one_round_trip_publishes_many(redis_server: RedisServer, prefix: str) -> None:
    # A private server: no other test's consumers run commands while we count.
    redis_client = redis_server.client()
    broker = brokerkit.connect(redis_server.url("redis+list"), prefix=prefix)
    # the connections' own handshakes are not counted: a single publish's (kept for
    # publishes) and a batch's (the pool's)
    assert broker.publish("warm-up", 1)
    assert len(broker.publish_many("warm-up", range(2500))) == 2500
    before = redis_client.info("stats")["total_commands_processed"]
    ids = broker.publish_many("orders", range(2500))
    after = redis_client.info("stats")["total_commands_processed"]
    # MULTI + 3 LPUSH chunks + EXEC, sent as one pipeline, plus one INFO call
    assert after - before <= 6
    assert redis_client.llen(f"{prefix}:{{orders}}") == 2500
    got = [d for d in broker.consume("orders", prefetch=100, limit=2500, timeout=5)]
    broker.ack(*got)
    assert [d.id for d in got] == ids  # FIFO
    broker.close()
    redis_client.close()


def test_maxlen_keeps_the_newest(connect) -> None:
    broker = connect(maxlen=3)
    broker.publish_many("orders", range(10))
    assert broker.inspect("orders").length == 3
    got = list(broker.consume("orders", timeout=0.2))
    assert [d.body for d in got] == [7, 8, 9]
    broker.ack(*got)


# -- receipts -------------------------------------------------------------------


def test_the_same_body_twice_gets_two_receipts(connect, redis_client: redis.Redis) -> None:
    """Two identical raw elements in one processing list: each ack removes exactly one."""
    broker = connect()
    queue = broker.inspect("orders").details["queue_key"]
    redis_client.lpush(queue, b"same", b"same")
    subscription = broker.subscribe("orders", prefetch=2, consumer="twin")
    one, two = subscription.receive(timeout=5), subscription.receive(timeout=5)
    assert one is not None and two is not None
    assert one.receipt != two.receipt and one.id == two.id
    one.ack()
    info = broker.inspect("orders")
    assert info.in_flight == 1 and info.groups[0].consumers[0].pending == 1
    two.ack()
    assert broker.inspect("orders").in_flight == 0


def test_a_late_ack_leaves_the_new_holder_alone(connect) -> None:
    """A's lease runs out (extended to a moment by hand), B gets the message, A's ack
    is StaleDelivery and B's copy stays in B's processing list."""
    slow, fast = connect(visibility_timeout=30), connect(visibility_timeout=30)
    slow.publish("orders", "work")
    mine = slow.subscribe("orders").receive(timeout=5)
    assert mine is not None
    mine.extend(seconds=0.05)
    theirs = fast.subscribe("orders").receive(timeout=5)
    assert theirs is not None and (theirs.id, theirs.attempt) == (mine.id, 2)
    with pytest.raises(brokerkit.StaleDelivery):
        mine.ack()
    info = fast.inspect("orders")
    assert info.in_flight == 1 and info.length == 0
    theirs.ack()
    assert fast.inspect("orders").in_flight == 0


# -- rescue ---------------------------------------------------------------------


def test_four_rescuers_requeue_each_stuck_delivery_exactly_once(
    connect, redis_client: redis.Redis
) -> None:
    for _round in range(3):
        crashed = connect(visibility_timeout=0.3)
        ids = set(crashed.publish_many("orders", range(40)))
        subscription = crashed.subscribe("orders", prefetch=40)
        held = [subscription.receive(timeout=5) for _ in range(40)]
        assert all(held)
        details = crashed.inspect("orders").details
        crashed.close()  # a crash: nothing settled, nothing renewed
        wait_for_server_time_past_deadlines(redis_client, details["expiry_key"])
        rescuers = [connect() for _ in range(4)]
        barrier = threading.Barrier(4)
        counts: list[int] = []

        def rescue(broker: RedisListBroker, barrier: threading.Barrier, counts: list[int]) -> None:
            barrier.wait()
            counts.append(broker.rescue("orders"))

        threads = [threading.Thread(target=rescue, args=(b, barrier, counts)) for b in rescuers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(counts)[-1] == 40 and sum(counts) == 40
        queued = redis_client.lrange(details["queue_key"], 0, -1)
        assert len(queued) == 40
        again = list(rescuers[0].consume("orders", prefetch=40, limit=40, timeout=5))
        assert {d.id for d in again} == ids and {d.attempt for d in again} == {2}
        rescuers[0].ack(*again)
        for broker in rescuers:
            broker.close()


def test_a_just_moved_delivery_of_a_live_consumer_is_not_stuck(
    connect, redis_client: redis.Redis
) -> None:
    """An element BLMOVEd into a live consumer's list whose lease is not yet recorded
    is left alone by rescuers; the consumer itself hands it back (never lost)."""
    broker = connect(visibility_timeout=0.5)
    subscription = broker.subscribe("orders", consumer="live")
    assert subscription.receive(timeout=0) is None  # registers the heartbeat
    details = broker.inspect("orders").details
    broker.publish("orders", "in transit")
    redis_client.lmove(details["queue_key"], f"{details['queue_key']}:processing:live")
    assert connect().rescue("orders") == 0
    assert redis_client.llen(f"{details['queue_key']}:processing:live") == 1
    delivery = subscription.receive(timeout=5)  # its own periodic reconcile
    assert delivery is not None and delivery.body == "in transit" and delivery.attempt == 1
    delivery.ack()


def test_a_dead_consumers_list_is_handed_back(connect, redis_client: redis.Redis) -> None:
    broker = connect()
    keys = broker.inspect("orders").details
    broker.publish("orders", "orphaned")
    redis_client.lmove(keys["queue_key"], f"{keys['queue_key']}:processing:ghost")
    seconds, _ = redis_client.time()
    redis_client.zadd(keys["consumers_key"], {"ghost": (seconds - 1) * 1000})
    assert broker.rescue("orders") == 1
    assert redis_client.exists(f"{keys['queue_key']}:processing:ghost") == 0
    delivery = broker.subscribe("orders").receive(timeout=5)
    assert delivery is not None and delivery.attempt == 1  # never handed out before
    delivery.ack()


def test_a_thousand_consumers_leave_no_key_behind(
    connect, redis_client: redis.Redis, prefix: str
) -> None:
    brokers = [connect() for _ in range(10)]
    before = keys_under(redis_client, prefix)
    for index in range(1000):
        broker = brokers[index % 10]
        with broker.subscribe("orders", prefetch=2) as subscription:
            broker.publish("orders", index)
            delivery = subscription.receive(timeout=5)
            assert delivery is not None
            delivery.ack()
    assert keys_under(redis_client, prefix) == before


# -- raw elements and errors ----------------------------------------------------


def test_an_element_lpushed_by_redis_cli_is_consumed(
    connect, redis_target: RedisTarget, prefix: str, redis_cli: str
) -> None:
    broker = connect(queue_key=f"{prefix}:queue:*")
    host, port, db = redis_target.host, str(redis_target.port), str(redis_target.db)
    command = [redis_cli, "-h", host, "-p", port, "-n", db, "LPUSH", f"{prefix}:queue:orders"]
    subprocess.run(
        [*command, '{"orderId": 123, "userId": 456}'],
        check=True,
        capture_output=True,
    )
    delivery = broker.subscribe("orders").receive(timeout=5)
    assert delivery is not None
    assert delivery.body == {"orderId": 123, "userId": 456}
    assert delivery.content_type == "application/json" and delivery.attempt == 1
    delivery.nack(requeue=False)
    dead = broker.subscribe(broker.dead_letter_topic("orders")).receive(timeout=5)
    assert dead is not None and dead.body == {"orderId": 123, "userId": 456}
    assert dead.headers["x-dead-letter-reason"] == "rejected"
    assert dead.headers["x-original-topic"] == "orders"
    dead.ack()


def test_raw_publishing_writes_plain_payloads(connect, redis_client: redis.Redis) -> None:
    broker = connect(raw=True)
    broker.publish("orders", {"orderId": 1})
    queue = broker.inspect("orders").details["queue_key"]
    assert redis_client.lrange(queue, 0, -1) == [b'{"orderId":1}']
    with pytest.raises(InvalidMessage, match="headers"):
        broker.publish("orders", "x", headers={"trace-id": "t"})
    assert redis_client.llen(queue) == 1
    delivery = broker.subscribe("orders").receive(timeout=5)
    assert delivery is not None and delivery.body == {"orderId": 1}
    delivery.ack()


def test_a_topic_key_holding_a_hash_is_a_clear_error(
    connect, redis_client: redis.Redis, prefix: str
) -> None:
    broker = connect()
    redis_client.hset(f"{prefix}:{{orders}}", "field", "value")
    with pytest.raises(IncompatibleTopic) as caught:
        broker.publish("orders", "x")
    message = str(caught.value)
    assert f"{prefix}:{{orders}}" in message and "holds a hash, not a list" in message
    with pytest.raises(IncompatibleTopic, match="holds a hash"):
        broker.subscribe("orders").receive(timeout=0.1)
    with pytest.raises(IncompatibleTopic, match="holds a hash"):
        broker.inspect("orders")
    assert redis_client.hgetall(f"{prefix}:{{orders}}") == {b"field": b"value"}  # untouched


def test_inspect_reports_lengths_in_flight_and_age(connect) -> None:
    broker = connect(max_deliveries=1)
    broker.publish_many("orders", range(5))
    subscription = broker.subscribe("orders", consumer="worker-1", prefetch=2)
    first = subscription.receive(timeout=5)
    assert first is not None
    first.nack()  # max_deliveries=1: dead-lettered
    info = broker.inspect("orders")
    # one buffered by the prefetch (in flight), three waiting, one dead letter
    assert (info.length, info.in_flight, info.dead_lettered) == (3, 1, 1)
    assert info.oldest_in_flight_age is not None and info.oldest_in_flight_age >= 0
    (group,) = info.groups
    assert group.lag == 3 and group.pending == 1
    assert [(c.name, c.pending) for c in group.consumers] == [("worker-1", 1)]
    assert broker.purge("orders") == 3
    assert broker.inspect("orders").length == 0


# -- batches --------------------------------------------------------------------


def test_a_batch_over_the_script_chunk_is_leased_and_acked_whole(
    connect, redis_client: redis.Redis, prefix: str
) -> None:
    """A fetch and an ack of more deliveries than one script command takes (CHUNK)."""
    broker = connect()
    before = keys_under(redis_client, prefix)
    ids = broker.publish_many("orders", range(1300))
    subscription = broker.subscribe("orders", prefetch=1200)
    got = [subscription.receive(timeout=5) for _ in range(1300)]
    assert all(got)
    assert [d.id for d in got if d is not None] == ids
    assert broker.inspect("orders").in_flight == 1300
    broker.ack(*[d for d in got if d is not None])
    assert broker.inspect("orders").in_flight == 0
    subscription.close()
    assert keys_under(redis_client, prefix) == before


def test_shortening_one_lease_of_a_batch_leaves_the_others_leased(
    connect, redis_client: redis.Redis
) -> None:
    broker = connect()
    broker.publish_many("orders", ["a", "b", "c"])
    subscription = broker.subscribe("orders", prefetch=3)
    a, b, c = (subscription.receive(timeout=5) for _ in range(3))
    assert a is not None and b is not None and c is not None
    b.extend(seconds=0.05)
    details = broker.inspect("orders").details
    limit = time.monotonic() + 10
    while broker.rescue("orders") == 0:  # b comes back once the server's clock passes
        assert time.monotonic() < limit, "the shortened lease never ran out"
        time.sleep(0.02)
    assert redis_client.llen(details["queue_key"]) == 1  # b alone
    with pytest.raises(brokerkit.StaleDelivery):
        b.ack()
    broker.ack(a, c)  # still theirs
    again = subscription.receive(timeout=5)
    assert again is not None and (again.body, again.attempt) == ("b", 2)
    again.ack()
    assert broker.inspect("orders").in_flight == 0


def test_a_lease_key_of_the_wrong_type_fails_the_fetch_and_loses_nothing(
    connect, redis_client: redis.Redis, prefix: str
) -> None:
    broker = connect()
    broker.publish_many("orders", ["a", "b"])
    queued = redis_client.lrange(f"{prefix}:{{orders}}", 0, -1)
    redis_client.set(f"{prefix}:{{orders}}:expiry", "not a hash")
    subscription = broker.subscribe("orders", prefetch=2)
    with pytest.raises(IncompatibleTopic, match="holds a string, not a hash"):
        subscription.receive(timeout=0.1)
    # popped, then put back as they were: nothing leased, nothing lost, order kept
    assert redis_client.lrange(f"{prefix}:{{orders}}", 0, -1) == queued
    assert redis_client.exists(f"{prefix}:{{orders}}:deadlines") == 0
    assert redis_client.exists(f"{prefix}:{{orders}}:leases:{subscription.consumer}") == 0
    redis_client.delete(f"{prefix}:{{orders}}:expiry")
    got = [subscription.receive(timeout=5) for _ in range(2)]
    assert [d.body for d in got if d is not None] == ["a", "b"]
    assert {d.attempt for d in got if d is not None} == {1}
    broker.ack(*[d for d in got if d is not None])


@pytest.mark.parametrize("how", ["rejected", "max_deliveries"])
def test_a_dead_lettered_raw_element_keeps_the_id_the_consumer_saw(
    connect, redis_client: redis.Redis, how: str
) -> None:
    """Lua gives a dead-lettered plain element the same digest id as the consumer's."""
    broker = connect(max_deliveries=1)
    queue = broker.inspect("orders").details["queue_key"]
    redis_client.lpush(queue, b'{"orderId": 7}', b"\xff\x00 not text")
    subscription = broker.subscribe("orders", prefetch=2)
    seen = [subscription.receive(timeout=5) for _ in range(2)]
    assert all(seen)
    ids = [d.id for d in seen if d is not None]
    assert all(i.startswith("raw-") and len(i) == 28 for i in ids) and ids[0] != ids[1]
    for delivery in seen:
        assert delivery is not None
        delivery.nack(requeue=how == "max_deliveries")  # max_deliveries=1: dead either way
    dead_topic = broker.dead_letter_topic("orders")
    dead = [broker.subscribe(dead_topic).receive(timeout=5) for _ in range(2)]
    assert [d.id for d in dead if d is not None] == ids
    assert [d.payload for d in dead if d is not None] == [d.payload for d in seen if d]
    assert {d.headers["x-dead-letter-reason"] for d in dead if d is not None} == {how}
    broker.ack(*[d for d in dead if d is not None])


def test_one_ack_settles_deliveries_of_consumers_whose_names_end_alike(
    connect, redis_client: redis.Redis, prefix: str
) -> None:
    broker = connect()
    broker.publish_many("orders", range(4))
    first = broker.subscribe("orders", consumer="b", prefetch=2)
    second = broker.subscribe("orders", consumer="a:b", prefetch=2)
    got = [first.receive(timeout=5), second.receive(timeout=5)]
    got += [first.receive(timeout=5), second.receive(timeout=5)]
    assert all(got)
    broker.ack(*[d for d in got if d is not None])  # b, a:b, b, a:b
    assert broker.inspect("orders").in_flight == 0
    for name in ("b", "a:b"):
        assert redis_client.exists(f"{prefix}:{{orders}}:leases:{name}") == 0
