"""A redis+list fetch of big elements moves them about ``CHUNK_BYTES`` at a time, each
move a batch of its own (see FETCH): the batches hold the elements in delivery order,
each with its lease; the client names them as it names one batch; an ack, nack,
extension, renewal or rescue of them comes out as it does for deliveries of one batch
each; and a fetch that cannot write its leases puts every batch back as it was.

A consumer sizes its next fetch by its last one (``state.element_size``): the tests
that set it fetch small elements as big ones would be fetched. From ``MOVE_BYTES`` an
element a consumer's fetch moves them with ``LMOVE`` instead (see FETCH, *Moves*, and
``tests/test_redis_list_moves.py``), but not on a cluster or where an ACL refuses it
(``state.moves_refused``): the tests of batches set that."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis import _envelope
from brokerkit.backends.redis.list.plan import CHUNK_BYTES, batches_for
from brokerkit.backends.redis.list.replies import unwrap
from brokerkit.exceptions import IncompatibleTopic, StaleDelivery
from tests.redis_cluster import RedisClusterSet

pytestmark = pytest.mark.redis_list


#: The size of elements a fetch takes two of a batch.
TWO_A_BATCH = CHUNK_BYTES // 2


@pytest.fixture
def connect(redis_broker: Callable[..., Any]) -> Callable[..., Any]:
    return functools.partial(redis_broker, "redis+list")


def _nonce(receipt: str) -> str:
    return receipt.partition("-")[0] + "-"


@pytest.mark.parametrize(
    ("count", "hint", "nonces", "woken", "sizes"),
    [
        (10, TWO_A_BATCH, 3, False, [4, 4, 2]),  # 2 a chunk would take 5: spread over 3
        (10, 50_000, 3, False, [5, 5]),  # 5 a chunk: 2 of the 3 batches
        (10, 100, 3, False, [10]),  # small: one batch, whatever the client offered
        (1, TWO_A_BATCH, 3, False, [1]),
        (9, CHUNK_BYTES, 4, False, [3, 3, 3]),
        (10, TWO_A_BATCH, 3, True, [4, 4, 2]),  # the element a BLMOVE moved goes first
        (2, TWO_A_BATCH, 2, True, [2]),  # 2 a chunk: one batch
        (5, TWO_A_BATCH, 1, False, [5]),
    ],
)
def test_a_fetch_moves_big_elements_in_batches_of_about_chunk_bytes(
    connect: Callable[..., Any],
    redis_client: redis.Redis,
    count: int,
    hint: int,
    nonces: int,
    woken: bool,
    sizes: list[int],
) -> None:
    broker = connect()
    plan = broker._topic("orders")
    keys = plan.keys
    names = [f"n{j}-" for j in range(nonces)]
    batches = [keys.batch(n, "c1") for n in names]
    redis_client.lpush(keys.queue, *[f"e{i}" for i in range(count + 5)])  # e0 next out
    expected = [f"e{i}".encode() for i in range(count)]
    if woken:  # as a BLMOVE would have moved it
        redis_client.lmove(keys.queue, keys.processing("c1"), "RIGHT", "RIGHT")
    args = [*plan.common, "c1", count, 30_000, names[0], hint, "1" if woken else "0", *names[1:]]
    fetch = broker._scripts["FETCH"]
    reply = fetch(keys=[*plan.keys_for(["c1"]), *batches], args=args)
    assert reply == [count, None, 0]
    assert [redis_client.lrange(b, 0, -1) for b in batches[: len(sizes)]] == [
        expected[sum(sizes[:j]) : sum(sizes[: j + 1])] for j in range(len(sizes))
    ]
    used = names[: len(sizes)]
    for unused in batches[len(sizes) :]:  # offered, not needed
        assert not redis_client.exists(unused)
    assert redis_client.exists(keys.processing("c1")) == 0
    assert redis_client.llen(keys.queue) == 5
    assert sorted(redis_client.hkeys(keys.expiry)) == sorted(f"{n}:c1".encode() for n in used)
    values = set(redis_client.hvals(keys.expiry))
    assert len(values) == 1  # one deadline and delivery time for all of them
    assert redis_client.hgetall(keys.fetches("c1")) == {
        n.encode(): b"0" * size for n, size in zip(used, sizes, strict=True)
    }
    assert sorted(redis_client.zrange(keys.deadlines, 0, -1)) == sorted(
        f"{n}0+{size}:c1".encode() for n, size in zip(used, sizes, strict=True)
    )
    # the ack of the whole fetch, one run a batch, leaves nothing behind
    runs = [item for n, size in zip(used, sizes, strict=True) for item in (f"{n}:c1", -size)]
    assert (
        broker._scripts["SETTLE"](
            keys=[*plan.keys_for(["c1"]), *batches], args=[*plan.common, "ack", *runs]
        )
        == []
    )
    assert redis_client.exists(keys.expiry, keys.fetches("c1"), keys.deadlines, *batches) == 0


def test_a_fetch_refuses_any_nonce_whose_batch_exists_and_moves_nothing(
    connect: Callable[..., Any], redis_client: redis.Redis
) -> None:
    broker = connect()
    plan = broker._topic("orders")
    names = ["n0-", "n1-", "n2-"]
    batches = [plan.keys.batch(n, "c1") for n in names]
    redis_client.lpush(plan.keys.queue, *[f"e{i}" for i in range(10)])
    redis_client.rpush(batches[2], "old")
    args = [*plan.common, "c1", 10, 30_000, names[0], TWO_A_BATCH, "0", *names[1:]]
    with pytest.raises(redis.ResponseError, match="nonce n2- is in use"):
        broker._scripts["FETCH"](keys=[*plan.keys_for(["c1"]), *batches], args=args)
    assert redis_client.llen(plan.keys.queue) == 10
    assert redis_client.exists(*batches[:2], plan.keys.expiry, plan.keys.deadlines) == 0


def test_the_client_offers_a_batch_a_chunk_of_up_to_about_fetch_bytes() -> None:
    assert batches_for(100, 0) == 4  # the size not known yet: the script sizes them
    assert batches_for(2, 0) == 2
    assert batches_for(0, 0) == batches_for(0, 10_000) == 1
    assert batches_for(100, 100) == 1
    assert batches_for(100, 10_000) == 4  # 26 a batch
    assert batches_for(100, 1_000_000) == 4  # 4 in all, one a batch
    assert batches_for(1, 10_000_000) == 1
    assert batches_for(10**6, 1) == 4  # a million bytes in all
    assert batches_for(100, 130_000) == 16  # 2 a batch (260 KB), not 1
    # at most FETCH_BYTES in all, of elements of at least 2/3 of a chunk when one a batch
    assert max(batches_for(10**6, size) for size in range(1, 10**6, 97)) == 23


def _spy(broker: Any, script: str) -> list[list[Any]]:
    """The ``ARGV`` of every call of ``script`` the broker makes from now on."""
    run = broker._scripts[script]
    sent: list[list[Any]] = []

    def spy(**call: Any) -> Any:
        sent.append(call["args"])
        return run(**call)

    broker._scripts[script] = spy
    return sent


def _fetch(broker: Any, count: int, element_size: int) -> tuple[str, Any, Any, list[Any]]:
    """One fetch of ``count`` deliveries of a fresh topic, sized for elements of
    ``element_size`` bytes: the topic, its keys, the subscription, the deliveries."""
    topic = f"chunk-{uuid.uuid4().hex[:8]}"
    broker.publish_many(topic, [f"m{i}" for i in range(count)])
    subscription = broker.subscribe(topic, prefetch=count)
    subscription.state.element_size = element_size
    subscription.state.moves_refused = True
    got = [subscription.receive(timeout=5) for _ in range(count)]
    deliveries = [d for d in got if d is not None]
    assert [d.body for d in deliveries] == [f"m{i}" for i in range(count)]
    return topic, broker._topic(topic).keys, subscription, deliveries


@pytest.mark.parametrize("by_moves", [False, True])
def test_a_consumer_fetches_big_elements_in_batches_and_settles_them_in_one_call(
    connect: Callable[..., Any], redis_client: redis.Redis, by_moves: bool
) -> None:
    broker = connect()
    topic = f"chunk-{uuid.uuid4().hex[:8]}"
    keys = broker._topic(topic).keys
    body = b"x" * 30_000
    sent = _spy(broker, "SETTLE")
    with broker.subscribe(topic, prefetch=40) as subscription:
        subscription.state.moves_refused = not by_moves
        for round_ in range(2):
            broker.publish_many(topic, [body + str(i).encode() for i in range(40)])
            got = [subscription.receive(timeout=5) for _ in range(40)]
            deliveries = [d for d in got if d is not None]
            assert [d.payload for d in deliveries] == [body + str(i).encode() for i in range(40)]
            nonces = list(dict.fromkeys(_nonce(d.receipt) for d in deliveries))
            # the first fetch knew no size: 4 batches, sized by the script; the next,
            # 8 of 30 KB a batch, or by moves, one batch
            assert len(nonces) == (4 if round_ == 0 else 1 if by_moves else 5)
            for nonce in nonces:
                mine = [d.receipt for d in deliveries if d.receipt.startswith(nonce)]
                assert mine == [f"{nonce}{i}:{subscription.consumer}" for i in range(len(mine))]
            sent.clear()
            broker.ack(*deliveries)
            # one call, the whole of each batch named by its name alone
            assert len(sent) == 1
            assert sent[0][-2 * len(nonces) :: 2] == [
                f"{n}:{subscription.consumer}" for n in nonces
            ]
            assert sum(sent[0][-2 * len(nonces) + 1 :: 2]) == -40
            assert not redis_client.keys(keys.batches_prefix + "*")
            assert redis_client.exists(keys.expiry, keys.deadlines) == 0


@pytest.mark.parametrize("deployment", ["standalone", "cluster"])
def test_an_asyncio_consumer_fetches_in_batches_on_a_server_and_on_a_cluster(
    request: pytest.FixtureRequest, prefix: str, deployment: str
) -> None:
    """On a cluster the fetch and the reads of its batches are round trips of their
    own (redis-py runs no script in a cluster's pipeline)."""
    if deployment == "cluster":
        cluster: RedisClusterSet = request.getfixturevalue("redis_cluster")
        url = cluster.url("redis+list", prefix=prefix)
    else:
        url = request.getfixturevalue("redis_target").url("redis+list", prefix=prefix)

    async def main() -> None:
        async with brokerkit.aio.connect(url) as broker:
            await broker.publish_many("orders", [f"m{i}" for i in range(9)])
            subscription = await broker.subscribe("orders", prefetch=9)
            subscription.state.element_size = TWO_A_BATCH
            subscription.state.moves_refused = True
            got = [await subscription.receive(timeout=5) for _ in range(9)]
            deliveries = [d for d in got if d is not None]
            assert [d.body for d in deliveries] == [f"m{i}" for i in range(9)]
            assert len({_nonce(d.receipt) for d in deliveries}) == 5
            await broker.ack(*deliveries)
            info = await broker.inspect("orders")
            assert (info.length, info.in_flight) == (0, 0)
            await subscription.close()

    asyncio.run(main())


def test_a_requeue_of_a_fetch_of_many_batches_keeps_their_order(
    connect: Callable[..., Any],
) -> None:
    broker = connect()
    _, _, subscription, deliveries = _fetch(broker, 9, TWO_A_BATCH)
    assert len({_nonce(d.receipt) for d in deliveries}) == 5
    broker.nack(*deliveries)
    again = [subscription.receive(timeout=5) for _ in range(9)]
    assert [(d.body, d.attempt) for d in again if d] == [(f"m{i}", 2) for i in range(9)]
    broker.ack(*again)  # type: ignore[arg-type]
    subscription.close()


@pytest.mark.parametrize("key", ["expiry", "fetches"])
def test_a_fetch_of_many_batches_whose_leases_cannot_be_written_loses_nothing(
    connect: Callable[..., Any], redis_client: redis.Redis, key: str
) -> None:
    broker = connect()
    topic = f"chunk-{uuid.uuid4().hex[:8]}"
    keys = broker._topic(topic).keys
    broker.publish_many(topic, [f"m{i}" for i in range(9)])
    queued = redis_client.lrange(keys.queue, 0, -1)
    subscription = broker.subscribe(topic, prefetch=9)
    subscription.state.element_size = TWO_A_BATCH
    subscription.state.moves_refused = True
    fetches = keys.fetches(subscription.consumer)
    redis_client.set(keys.expiry if key == "expiry" else fetches, "not a hash")
    with pytest.raises(IncompatibleTopic):
        subscription.receive(timeout=0.1)
    assert redis_client.lrange(keys.queue, 0, -1) == queued  # every batch back, in order
    assert redis_client.exists(keys.deadlines) == 0
    assert not redis_client.keys(keys.batches_prefix + "*")
    redis_client.delete(keys.expiry, fetches)
    got = [subscription.receive(timeout=5) for _ in range(9)]
    assert [d.body for d in got if d] == [f"m{i}" for i in range(9)]
    broker.ack(*got)  # type: ignore[arg-type]
    subscription.close()


@pytest.mark.parametrize("how", ["leases ran out", "consumer died"])
def test_a_rescue_hands_back_every_batch_of_a_fetch_once_in_order(
    connect: Callable[..., Any], redis_client: redis.Redis, how: str
) -> None:
    broker = connect(visibility_timeout=60)
    # 13 a batch: the indexes of two digits of one batch come before the next batch's
    topic, keys, subscription, deliveries = _fetch(broker, 40, 20_000)
    nonces = list(dict.fromkeys(_nonce(d.receipt) for d in deliveries))
    assert len(nonces) == 4
    consumer = subscription.consumer
    if how == "leases ran out":
        for nonce in nonces:
            redis_client.hset(keys.expiry, f"{nonce}:{consumer}", "1.5")
        groups = redis_client.zrange(keys.deadlines, 0, -1)
        redis_client.zadd(keys.deadlines, dict.fromkeys(groups, 0))
    else:
        redis_client.zadd(keys.consumers, {consumer: 0})
    assert broker.rescue(topic) == 40
    assert broker.rescue(topic) == 0
    # the oldest next out, as they were fetched
    back = [unwrap(e) for e in reversed(redis_client.lrange(keys.queue, 0, -1))]
    assert [(n, _envelope.decode(topic, e).body) for n, e in back] == [
        (1, f"m{i}") for i in range(40)
    ]
    assert not redis_client.keys(keys.batches_prefix + "*")
    with pytest.raises(StaleDelivery):
        broker.ack(*deliveries)
    subscription.close()


def _stale_after(broker: Any, deliveries: list[Any], how: str) -> list[int]:
    """The indexes of the deliveries an ack, a renewal or an extension by 600 s (``how``)
    of all of them reported stale."""
    if how == "renew":
        return sorted(deliveries.index(d) for d in broker._renew(deliveries))
    settle = broker.ack if how == "ack" else functools.partial(broker.extend, seconds=600)
    try:
        settle(*deliveries)
    except StaleDelivery as exc:
        return sorted(deliveries.index(d) for d in exc.deliveries)
    return []


_STATES = st.sampled_from(["live", "settled", "own live", "own expired"])


@settings(
    max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(
    states=st.lists(_STATES, min_size=1, max_size=9),
    batch_values=st.lists(st.sampled_from(["live", "expired", "gone"]), min_size=5, max_size=5),
    how=st.sampled_from(["ack", "renew", "extend 600"]),
)
def test_settling_a_whole_fetch_of_many_batches_is_naming_each_delivery(
    connect: Callable[..., Any],
    redis_client: redis.Redis,
    states: list[str],
    batch_values: list[str],
    how: str,
) -> None:
    """The client names each batch of a fetch alone when it acks, extends or renews the
    whole of it, in order; whatever state each batch's lease and each delivery are in,
    that comes out as naming each delivery does: the same stale ones, hand-backs,
    expiry values and flags."""
    broker = connect(visibility_timeout=60)
    seconds, _ = redis_client.time()
    live = f"{(seconds + 10) * 1000}.5"
    sent = _spy(broker, "SETTLE" if how == "ack" else "EXTEND")
    outcomes = []
    for whole in (True, False):
        topic, keys, subscription, deliveries = _fetch(broker, len(states), TWO_A_BATCH)
        consumer = subscription.consumer
        fetches = keys.fetches(consumer)
        nonces = list(dict.fromkeys(_nonce(d.receipt) for d in deliveries))
        flags = {"live": "0", "settled": "1"}
        for nonce, value in zip(nonces, batch_values, strict=False):
            mine = [
                s for d, s in zip(deliveries, states, strict=True) if d.receipt.startswith(nonce)
            ]
            redis_client.hset(fetches, nonce, "".join(flags.get(s, "2") for s in mine))
            name = f"{nonce}:{consumer}"
            if value == "gone":
                redis_client.hdel(keys.expiry, name)
            else:
                redis_client.hset(keys.expiry, name, live if value == "live" else "1.5")
        for delivery, state in zip(deliveries, states, strict=True):
            if state.startswith("own"):
                redis_client.hset(
                    keys.expiry, delivery.receipt, live if state == "own live" else "1.5"
                )
        if not whole:
            subscription.state.fetched = ([], [])  # so the call names each delivery
        sent.clear()
        stale = _stale_after(broker, deliveries, how)
        # the short form: each batch's name and minus its size
        runs = [
            x
            for n in nonces
            for x in (f"{n}:{consumer}", -sum(d.receipt.startswith(n) for d in deliveries))
        ]
        assert (sent[0][-len(runs) :] == runs) is whole
        back = sorted(
            (unwrap(e)[0], _envelope.decode(topic, unwrap(e)[1]).payload)
            for e in redis_client.lrange(keys.queue, 0, -1)
        )
        renewed = [
            v is not None and v != live.encode() and v != b"1.5"
            for v in redis_client.hmget(
                keys.expiry,
                [f"{n}:{consumer}" for n in nonces] + [d.receipt for d in deliveries],
            )
        ]
        outcomes.append(
            (
                stale,
                back,
                renewed,
                [redis_client.hget(fetches, n) for n in nonces],
                [redis_client.exists(keys.batch(n, consumer)) for n in nonces],
            )
        )
        subscription.close()
    assert outcomes[0] == outcomes[1]
