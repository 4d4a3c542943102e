"""redis+list: a call that meets a key of another Redis type raises IncompatibleTopic
naming the key and changes nothing -- a purge of a topic whose keys another program
wrote, a settlement, renewal or rescue that would dead-letter into a dead-letter key
of another type, a delayed publish to a queue key of another type. Against a real
redis-server."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import brokerkit
from brokerkit.backends.redis.list import RedisListBroker
from brokerkit.exceptions import IncompatibleTopic, StaleDelivery
from tests.conftest import RedisTarget

TOPIC = "orders"

#: A key of each type brokerkit+list never gives the key it is written at.
WRITERS: dict[str, Callable[[redis.Redis, str], Any]] = {
    "hash": lambda r, k: r.hset(k, "field", "precious"),
    "set": lambda r, k: r.sadd(k, "precious"),
    "string": lambda r, k: r.set(k, "precious"),
    "zset": lambda r, k: r.zadd(k, {"precious": 1}),
    "stream": lambda r, k: r.xadd(k, {"f": "precious"}),
    "list": lambda r, k: r.rpush(k, "precious"),
}


def _snapshot(client: redis.Redis, prefix: str) -> dict[bytes, tuple[bytes, bytes]]:
    return {k: (client.type(k), client.dump(k)) for k in client.scan_iter(f"{prefix}:*")}


@pytest.fixture
def connect(redis_target: RedisTarget, prefix: str) -> Iterator[Callable[..., RedisListBroker]]:
    made: list[RedisListBroker] = []

    def factory(**options: Any) -> RedisListBroker:
        broker = brokerkit.connect(redis_target.url("redis+list"), prefix=prefix, **options)
        assert isinstance(broker, RedisListBroker)
        made.append(broker)
        return broker

    yield factory
    for broker in made:
        broker.close()


# -- purge -------------------------------------------------------------------------

#: The keys purge deletes, and the type each must hold.
PURGED = {"queue": "list", "scheduled": "zset", "returned": "string", "attempts": "hash"}


@pytest.mark.parametrize("part", sorted(PURGED))
@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_purge_of_a_key_of_another_type_changes_nothing(
    connect: Callable[..., RedisListBroker],
    redis_client: redis.Redis,
    prefix: str,
    part: str,
    kind: str,
) -> None:
    if PURGED[part] == kind:
        pytest.skip("the type the key should hold")
    broker = connect()
    broker.publish(TOPIC, "waiting")
    broker.publish(TOPIC, "held", delay=3600)
    key = getattr(broker._topic(TOPIC).keys, part)
    redis_client.delete(key)
    WRITERS[kind](redis_client, key)
    before = _snapshot(redis_client, prefix)
    with pytest.raises(IncompatibleTopic, match=key.replace("{", r"\{").replace("}", r"\}")):
        broker.purge(TOPIC)
    assert _snapshot(redis_client, prefix) == before


def test_purge_counts_and_deletes_as_before(
    connect: Callable[..., RedisListBroker], redis_client: redis.Redis, prefix: str
) -> None:
    broker = connect()
    broker.publish_many(TOPIC, ["a", "b", "c"])
    broker.publish_many(TOPIC, ["d", "e"], delay=3600)
    assert broker.purge(TOPIC) == 5
    assert broker.purge(TOPIC) == 0
    assert broker.inspect(TOPIC).length == 0


# -- dead letters --------------------------------------------------------------------


def _wait_expired(broker: RedisListBroker, client: redis.Redis) -> None:
    """Poll the server's clock until every lease of the topic has run out."""
    expiry = broker._topic(TOPIC).keys.expiry
    deadline = time.monotonic() + 30
    while True:
        values = [float(v) for v in client.hvals(expiry)]
        seconds, micros = client.time()
        if values and max(values) < seconds * 1000 + micros / 1000:
            return
        assert time.monotonic() < deadline, "the leases never ran out"


def _nothing(broker: RedisListBroker, client: redis.Redis, delivery: Any) -> None:
    pass


def _expire(broker: RedisListBroker, client: redis.Redis, delivery: Any) -> None:
    _wait_expired(broker, client)


def _kill(broker: RedisListBroker, client: redis.Redis, delivery: Any) -> None:
    # its heartbeat stopped: as the time passing would leave it
    client.zadd(broker._topic(TOPIC).keys.consumers, {delivery.subscription.consumer: 0})


_Act = Callable[[RedisListBroker, redis.Redis, Any], None]

#: Every way a redis+list call dead-letters: (what comes first, the call, its options).
PATHS: dict[str, tuple[_Act, _Act, dict[str, Any]]] = {
    "reject": (_nothing, lambda b, c, d: d.nack(requeue=False), {}),
    "requeue at max_deliveries": (_nothing, lambda b, c, d: d.nack(), {"max_deliveries": 1}),
    "delayed requeue at max_deliveries": (
        _nothing,
        lambda b, c, d: d.nack(delay=5),
        {"max_deliveries": 1},
    ),
    "ack of an expired lease at max_deliveries": (
        _expire,
        lambda b, c, d: d.ack(),
        {"max_deliveries": 1, "visibility_timeout": 0.2},
    ),
    "extend of an expired lease at max_deliveries": (
        _expire,
        lambda b, c, d: d.extend(30),
        {"max_deliveries": 1, "visibility_timeout": 0.2},
    ),
    "rescue of an expired lease at max_deliveries": (
        _expire,
        lambda b, c, d: b.rescue(TOPIC),
        {"max_deliveries": 1, "visibility_timeout": 0.2},
    ),
    "rescue of a dead consumer's delivery at max_deliveries": (
        _kill,
        lambda b, c, d: b.rescue(TOPIC),
        {"max_deliveries": 1},
    ),
}


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("kind", ["hash", "string", "zset"])
def test_a_dead_letter_to_a_key_of_another_type_changes_nothing(
    connect: Callable[..., RedisListBroker],
    redis_client: redis.Redis,
    prefix: str,
    path: str,
    kind: str,
) -> None:
    """The call raises IncompatibleTopic naming the dead-letter key and leaves every
    key as it was: the message is not lost; once the key is a list again, the same
    call dead-letters it."""
    prepare, act, options = PATHS[path]
    broker = connect(**options)
    broker._suspend_renewals()  # nothing changes the keys but the call under test
    (message_id,) = broker.publish_many(TOPIC, ["job"])
    # another message leased with it, which the call must not touch either
    broker.publish_many(TOPIC, ["other"])
    subscription = broker.subscribe(TOPIC, prefetch=2)
    delivery = subscription.receive(timeout=5)
    assert delivery is not None and delivery.id == message_id
    dlq = broker._topic(TOPIC).keys.dead_letters
    WRITERS[kind](redis_client, dlq)
    prepare(broker, redis_client, delivery)
    before = _snapshot(redis_client, prefix)
    with pytest.raises(IncompatibleTopic, match="dead-letter|" + dlq.replace("{", r"\{")) as info:
        act(broker, redis_client, delivery)
    assert dlq in str(info.value)
    after = _snapshot(redis_client, prefix)
    assert after == before
    # the message survives: with the key a list again, the call dead-letters it
    redis_client.delete(dlq)
    with contextlib.suppress(StaleDelivery):  # the ack or extend of a lease that ran out
        act(broker, redis_client, delivery)
    letters = redis_client.lrange(dlq, 0, -1)
    # (a rescue takes the other message, leased with it, along)
    assert message_id in [brokerkit.backends.redis._envelope.decode(TOPIC, e).id for e in letters]
    subscription.close()


def test_a_settlement_that_dead_letters_nothing_works_with_a_key_of_another_type(
    connect: Callable[..., RedisListBroker], redis_client: redis.Redis
) -> None:
    """Only a call that would dead-letter is refused: acks, requeues below the limit,
    renewals and rescues of a topic whose dead-letter key is wrong go on."""
    broker = connect(max_deliveries=3)
    dlq = broker._topic(TOPIC).keys.dead_letters
    redis_client.hset(dlq, "field", "precious")
    broker.publish_many(TOPIC, ["a", "b"])
    with broker.subscribe(TOPIC) as subscription:
        first = subscription.receive(timeout=5)
        assert first is not None
        first.nack()  # its second delivery is still below the limit: next out
        again = subscription.receive(timeout=5)
        assert again is not None and again.attempt == 2 and again.id == first.id
        again.extend(10)
        again.ack()
        second = subscription.receive(timeout=5)
        assert second is not None and second.attempt == 1
        second.ack()
    assert broker.rescue(TOPIC) == 0
    assert redis_client.hget(dlq, "field") == b"precious"


# -- delayed publishes ---------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 3, 2500])
@pytest.mark.parametrize("kind", ["hash", "set", "string", "zset", "stream"])
def test_a_delayed_publish_to_a_queue_of_another_type_is_refused(
    connect: Callable[..., RedisListBroker],
    redis_client: redis.Redis,
    prefix: str,
    kind: str,
    count: int,
) -> None:
    broker = connect()
    queue = broker._topic(TOPIC).keys.queue
    WRITERS[kind](redis_client, queue)
    before = _snapshot(redis_client, prefix)
    bodies = [f"later {i}" for i in range(count)]
    with pytest.raises(IncompatibleTopic, match=queue.replace("{", r"\{").replace("}", r"\}")):
        broker.publish_many(TOPIC, bodies, delay=60)
    assert _snapshot(redis_client, prefix) == before
