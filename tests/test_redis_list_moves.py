"""A redis+list consumer whose last fetch was of elements of ``MOVE_BYTES`` or more
leases its next by moves (see FETCH, *Moves*): ``MULTI``, the fetch script, one
``LMOVE`` an element, ``RENAMENX`` back, ``EXEC``. The script leases them and lends the
queue to the moves under the consumer's ``moving:`` name; nobody else ever sees the
queue under that name, no body enters Lua, and whatever the script leases otherwise (a
message that came back, alone), or fails to lease, the moves move nothing.

The contract suite runs over this path too (``TestRedisListByMovesContract``)."""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis

from brokerkit.backends.redis.list.plan import FETCH_BYTES, MOVE_BYTES, moves_for
from brokerkit.exceptions import BrokerError, IncompatibleTopic

pytestmark = pytest.mark.redis_list

BIG = b"x" * MOVE_BYTES


@pytest.fixture
def connect(redis_broker: Callable[..., Any]) -> Callable[..., Any]:
    return functools.partial(redis_broker, "redis+list")


def _sent(subscription: Any) -> list[list[str]]:
    """The names of the commands of every send of the subscription's fetches from now
    on (on its kept connection), one list a send; not its maintenance's (the reads and
    the RESCUE script that go on that connection too)."""
    reader = subscription.state.reader
    send = reader.send
    rescue = subscription.broker._scripts["RESCUE"]
    sent: list[list[str]] = []

    def spy(*commands: tuple[Any, ...], packed: Any = None) -> Any:
        first = commands[0]
        upkeep = (
            first[0] in ("ZRANGE", "HKEYS")
            or first[1:2] == (rescue.sha,)
            or first[1:3] == ("LOAD", rescue.script)
        )
        if not upkeep:
            sent.append([str(command[0]) for command in commands])
        return send(*commands, packed=packed)

    reader.send = spy
    return sent


TRANSACTION = ["MULTI", "EVALSHA", "LMOVE", "RENAMENX", "EXEC"]


def _shape(send: list[str]) -> list[str]:
    """A send's command names, each run of LMOVEs as one."""
    return [name for i, name in enumerate(send) if name != "LMOVE" or send[i - 1] != "LMOVE"]


def _fresh(connect: Callable[..., Any]) -> tuple[Any, str, Any]:
    """A broker, a topic no other test uses, and its keys."""
    broker = connect()
    topic = f"moves-{uuid.uuid4().hex[:8]}"
    return broker, topic, broker._topic(topic).keys


def _bodies(count: int, start: int = 0) -> list[bytes]:
    return [b"%06d" % i + BIG for i in range(start, start + count)]


def _no_keys_but_the_queue(redis_client: redis.Redis, keys: Any) -> None:
    assert not redis_client.keys(keys.moving_prefix + "*")
    assert not redis_client.keys(keys.batches_prefix + "*")
    assert redis_client.exists(keys.expiry, keys.deadlines) == 0


def test_a_fetch_of_big_elements_moves_them_in_one_transaction(
    connect: Callable[..., Any], redis_client: redis.Redis
) -> None:
    broker, topic, keys = _fresh(connect)
    broker.publish_many(topic, _bodies(30))
    with broker.subscribe(topic, prefetch=10) as subscription:
        first = [subscription.receive(timeout=5) for _ in range(10)]  # sized by the script
        sent = _sent(subscription)
        second = [subscription.receive(timeout=5) for _ in range(10)]
        assert sent[0] == ["MULTI", "EVALSHA", *["LMOVE"] * 10, "RENAMENX", "EXEC"]
        assert len(sent) == 1  # the ten in one send, one batch
        assert len({d.receipt.partition("-")[0] for d in second}) == 1
        assert redis_client.llen(keys.queue) == 10
        assert not redis_client.keys(keys.moving_prefix + "*")
        broker.ack(*first, *second)
        rest = [subscription.receive(timeout=5) for _ in range(10)]
        broker.ack(*rest)
        got = [d.payload for d in (*first, *second, *rest)]
        assert got == _bodies(30)
        assert all(d.attempt == 1 for d in (*first, *second, *rest))
    _no_keys_but_the_queue(redis_client, keys)
    assert redis_client.exists(keys.queue) == 0


def test_a_message_that_came_back_goes_out_alone_and_the_moves_move_nothing(
    connect: Callable[..., Any], redis_client: redis.Redis
) -> None:
    broker, topic, keys = _fresh(connect)
    broker.publish_many(topic, _bodies(12))
    with broker.subscribe(topic, prefetch=4) as subscription:
        first = [subscription.receive(timeout=5) for _ in range(4)]
        broker.nack(first[1])  # back to the head of the queue
        broker.ack(first[0], *first[2:])
        sent = _sent(subscription)
        again = subscription.receive(timeout=5)
        assert again is not None and (again.payload, again.attempt) == (first[1].payload, 2)
        # the transaction ran: the script leased the one alone (read from its batch
        # after), the moves moved nothing
        assert sent == [["MULTI", "EVALSHA", *["LMOVE"] * 4, "RENAMENX", "EXEC"]]
        assert redis_client.llen(keys.queue) == 8
        assert not redis_client.keys(keys.moving_prefix + "*")
        broker.ack(again)
        rest = [subscription.receive(timeout=5) for _ in range(8)]
        assert [d.payload for d in rest if d] == _bodies(8, start=4)
        broker.ack(*rest)
    _no_keys_but_the_queue(redis_client, keys)


@pytest.mark.parametrize("key", ["expiry", "fetches"])
def test_a_fetch_by_moves_whose_leases_cannot_be_written_moves_nothing(
    connect: Callable[..., Any], redis_client: redis.Redis, key: str
) -> None:
    broker, topic, keys = _fresh(connect)
    broker.publish_many(topic, _bodies(8))
    subscription = broker.subscribe(topic, prefetch=4)
    first = [subscription.receive(timeout=5) for _ in range(4)]
    broker.ack(*first)
    queued = redis_client.lrange(keys.queue, 0, -1)
    fetches = keys.fetches(subscription.consumer)
    redis_client.set(keys.expiry if key == "expiry" else fetches, "not a hash")
    sent = _sent(subscription)
    with pytest.raises(IncompatibleTopic):
        subscription.receive(timeout=0.1)
    assert sent[0][0] == "MULTI"
    assert redis_client.lrange(keys.queue, 0, -1) == queued  # all of it, in order
    assert not redis_client.keys(keys.moving_prefix + "*")
    assert not redis_client.keys(keys.batches_prefix + "*")
    redis_client.delete(keys.expiry, fetches)
    rest = [subscription.receive(timeout=5) for _ in range(4)]
    assert [d.payload for d in rest if d] == _bodies(4, start=4)
    broker.ack(*rest)
    subscription.close()


def test_a_fetch_by_moves_loads_its_script_where_the_server_lost_it(
    connect: Callable[..., Any], redis_client: redis.Redis
) -> None:
    broker, topic, _ = _fresh(connect)
    broker.publish_many(topic, _bodies(8))
    with broker.subscribe(topic, prefetch=4) as subscription:
        first = [subscription.receive(timeout=5) for _ in range(4)]
        broker.ack(*first)
        redis_client.script_flush()
        sent = _sent(subscription)
        rest = [subscription.receive(timeout=5) for _ in range(4)]
        assert [d.payload for d in rest if d] == _bodies(4, start=4)
        # NOSCRIPT, nothing ran: loaded, and again
        assert [s[0] for s in sent] == ["MULTI", "SCRIPT", "MULTI"]
        broker.ack(*rest)


def test_a_woken_consumer_leases_what_waits_behind_a_big_element_by_moves(
    connect: Callable[..., Any], redis_client: redis.Redis
) -> None:
    broker, topic, keys = _fresh(connect)
    with broker.subscribe(topic, prefetch=5) as subscription:
        assert subscription.receive(timeout=0) is None  # it waits in BLMOVE next
        broker.publish_many(topic, _bodies(7))
        sent = _sent(subscription)
        got = [subscription.receive(timeout=5) for _ in range(7)]
        assert [_shape(s) for s in sent[:2]] == [["BLMOVE"], TRANSACTION]
        assert sent[1].count("LMOVE") == 4  # behind the one handed out
        assert [d.payload for d in got if d] == _bodies(7)
        assert all(d.attempt == 1 for d in got if d)
        assert len({d.receipt.partition("-")[0] for d in got[:5] if d}) == 1  # one batch
        broker.ack(*got)
    _no_keys_but_the_queue(redis_client, keys)


@pytest.mark.parametrize("lost", ["script", "nothing"])
def test_a_woken_lease_by_moves_runs_again_without_them_where_the_script_was_lost(
    connect: Callable[..., Any], redis_client: redis.Redis, lost: str
) -> None:
    broker, topic, keys = _fresh(connect)
    with broker.subscribe(topic, prefetch=5) as subscription:
        assert subscription.receive(timeout=0) is None
        broker.publish_many(topic, _bodies(5))
        if lost == "script":
            redis_client.script_flush()
        sent = _sent(subscription)
        got = [subscription.receive(timeout=5) for _ in range(5)]
        assert [_shape(s) for s in sent[:2]] == [["BLMOVE"], TRANSACTION]
        assert [(d.payload, d.attempt) for d in got if d] == [(b, 1) for b in _bodies(5)]
        broker.ack(*got)
        assert subscription.receive(timeout=0) is None
    _no_keys_but_the_queue(redis_client, keys)


def test_a_woken_consumer_takes_a_message_that_came_back_alone_and_moves_nothing(
    connect: Callable[..., Any], redis_client: redis.Redis
) -> None:
    broker, topic, keys = _fresh(connect)
    holder = broker.subscribe(topic)
    broker.publish(topic, b"back" + BIG)
    held = holder.receive(timeout=5)
    assert held is not None
    with broker.subscribe(topic, prefetch=5) as subscription:
        assert subscription.receive(timeout=0) is None
        broker.publish_many(topic, _bodies(3))
        broker.nack(held)  # at the head, before the three
        sent = _sent(subscription)
        again = subscription.receive(timeout=5)
        assert again is not None and (again.payload, again.attempt) == (b"back" + BIG, 2)
        assert [_shape(s) for s in sent[:2]] == [["BLMOVE"], TRANSACTION]
        assert redis_client.llen(keys.queue) == 3  # the moves moved none of them
        rest = [subscription.receive(timeout=5) for _ in range(3)]
        assert [(d.payload, d.attempt) for d in rest if d] == [(b, 1) for b in _bodies(3)]
        broker.ack(again, *rest)
    holder.close()
    _no_keys_but_the_queue(redis_client, keys)


@pytest.mark.parametrize("lent", [3, 7])
def test_a_queue_left_under_the_moving_key_goes_back_to_its_head_first(
    connect: Callable[..., Any], redis_client: redis.Redis, lent: int
) -> None:
    """As a transaction whose MULTI the server refused leaves it when a producer pushed
    meanwhile (or another program would): the next fetch by moves gives it back, the
    shorter of the two lists moving (3: the lent part; 7: the queue)."""
    broker, topic, keys = _fresh(connect)
    broker.publish_many(topic, _bodies(10))
    subscription = broker.subscribe(topic, prefetch=4)
    moving = keys.moving(subscription.consumer)
    for _ in range(lent):  # the oldest, next out first, as the queue was lent
        redis_client.rpoplpush(keys.queue, moving)
    subscription.state.element_size = len(BIG)  # its next fetch is by moves
    sent = _sent(subscription)
    got = [subscription.receive(timeout=5) for _ in range(10)]
    assert sent[0][0] == "MULTI"
    assert [d.payload for d in got if d] == _bodies(10)
    assert all(d.attempt == 1 for d in got if d)
    broker.ack(*got)
    subscription.close()
    _no_keys_but_the_queue(redis_client, keys)


def test_a_fetch_by_moves_the_server_refuses_for_a_while_is_raised_and_retried_later(
    connect: Callable[..., Any], redis_client: redis.Redis
) -> None:
    """Out of memory, the server refuses the transaction (EXECABORT): not a refusal for
    good, so the consumer fetches by moves again once the server takes writes."""
    broker, topic, _ = _fresh(connect)
    broker.publish_many(topic, _bodies(8))
    with broker.subscribe(topic, prefetch=4) as subscription:
        first = [subscription.receive(timeout=5) for _ in range(4)]
        broker.ack(*first)
        saved = redis_client.config_get("maxmemory")["maxmemory"]
        redis_client.config_set("maxmemory", 1)
        try:
            with pytest.raises(BrokerError, match=r"(?i)memory"):
                subscription.receive(timeout=0.1)
        finally:
            redis_client.config_set("maxmemory", saved)
        assert subscription.state.moves_refused is False
        sent = _sent(subscription)
        rest = [subscription.receive(timeout=5) for _ in range(4)]
        assert sent[0][0] == "MULTI"
        assert [(d.payload, d.attempt) for d in rest if d] == [(b, 1) for b in _bodies(4, 4)]
        broker.ack(*rest)


def test_a_fetch_by_moves_of_about_fetch_bytes_looks_again_at_once(
    connect: Callable[..., Any],
) -> None:
    broker, topic, _ = _fresh(connect)
    big = b"y" * (FETCH_BYTES // 3 + 1)  # two a fetch
    broker.publish_many(topic, [big + b"%d" % i for i in range(5)])
    with broker.subscribe(topic, prefetch=5) as subscription:
        subscription.state.element_size = len(big)
        sent = _sent(subscription)
        first = [subscription.receive(timeout=5) for _ in range(2)]
        assert sent[0].count("LMOVE") == 2
        assert subscription.state.idle is False  # capped: more wait
        rest = [subscription.receive(timeout=5) for _ in range(3)]
        assert [d.payload for d in (*first, *rest) if d] == [big + b"%d" % i for i in range(5)]
        assert subscription.state.idle is True  # the last fetch found fewer than it asked
        broker.ack(*first, *rest)


def test_producers_racing_fetches_by_moves_lose_nothing_and_keep_their_order(
    connect: Callable[..., Any], redis_client: redis.Redis
) -> None:
    """The queue is lent to the moves under another name only inside the transaction:
    a producer pushing meanwhile waits for its end, never writes a new queue."""
    broker, topic, keys = _fresh(connect)
    count = 400
    broker.publish(topic, b"warm-up" + BIG)

    def produce() -> None:
        for start in range(0, count, 8):
            broker.publish_many(topic, _bodies(8, start=start))

    producer = threading.Thread(target=produce)
    got: list[bytes] = []
    with broker.subscribe(topic, prefetch=16) as subscription:
        warm = subscription.receive(timeout=5)
        assert warm is not None
        broker.ack(warm)
        sent = _sent(subscription)
        producer.start()
        while len(got) < count:
            delivery = subscription.receive(timeout=5)
            assert delivery is not None, f"{len(got)} of {count} came"
            got.append(delivery.payload)
            broker.ack(delivery)
        producer.join()
        assert any(s[0] == "MULTI" for s in sent)
    assert got == _bodies(count)
    _no_keys_but_the_queue(redis_client, keys)


def test_a_fetch_by_moves_takes_about_fetch_bytes() -> None:
    assert moves_for(100, 10_000) == 100
    assert moves_for(100, 1_000_000) == FETCH_BYTES // 1_000_000
    assert moves_for(100, 10 * FETCH_BYTES) == 1
    assert moves_for(3, MOVE_BYTES) == 3


def test_a_rescue_gives_back_what_a_dead_consumer_left_under_its_moving_key(
    connect: Callable[..., Any], redis_client: redis.Redis
) -> None:
    """Where a consumer that ran a transaction of moves without MULTI stopped before
    its next fetch gave its queue back, a rescue does once its heartbeat is over."""
    broker, topic, keys = _fresh(connect)
    broker.publish_many(topic, _bodies(6))
    for _ in range(2):  # the oldest, next out first, as the queue was lent
        redis_client.rpoplpush(keys.queue, keys.moving("ghost"))
    redis_client.zadd(keys.consumers, {"ghost": 0})  # its heartbeat long over
    broker.rescue(topic)
    assert redis_client.exists(keys.moving("ghost"), keys.consumers) == 0
    with broker.subscribe(topic, prefetch=6) as subscription:
        got = [subscription.receive(timeout=5) for _ in range(6)]
        assert [(d.payload, d.attempt) for d in got if d] == [(b, 1) for b in _bodies(6)]
        broker.ack(*got)
