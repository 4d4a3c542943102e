"""redis+stream acks of one whole read batch by its count, against a real
redis-server: the deliveries of one ``XREADGROUP ... >``, acked exactly as read, are
acked with ``XGROUP DELCONSUMER`` + ``CREATECONSUMER`` instead of an ``XACK`` of their
ids, only while the server proves this consumer holds exactly the batch (see
``ack_script.ACK``). A late ack never takes another member's claim, and never acks an
entry this consumer holds outside the batch, whatever claimed, read or was handed
back between the read and the ack."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import redis

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis.stream import RedisStreamBroker, settle, settle_async
from brokerkit.backends.redis.stream.ack_script import ACK, COUNT_ACK_MEMBERS
from tests.conftest import RedisTarget
from tests.redis_stream_aio_support import run

Make = Callable[..., RedisStreamBroker]

#: The ack script's flags: by ids, by count (see ack_script.ACK).
IDS, COUNT = "00", "001"


@pytest.fixture
def make(redis_broker: Callable[..., Any]) -> Make:
    """``make(**options)``: a new redis+stream broker under this test's prefix."""
    return functools.partial(redis_broker, "redis+stream")


@pytest.fixture
def flags(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The flags of every ack script call (delete, retry, count), in order; batches
    of any size may be acked by count (the tests' batches are small)."""
    seen: list[str] = []
    for module in (settle, settle_async):
        monkeypatch.setattr(module, "WHOLE_BATCH", 1)
    for module in (settle, settle_async):
        real = module.run_scripts

        def spy(client: Any, calls: Any, real: Any = real) -> Any:
            seen.extend(args[2] for script, _, args in calls if script.script == ACK)
            return real(client, calls)

        monkeypatch.setattr(module, "run_scripts", spy)
    return seen


def _batch(subscription: brokerkit.Subscription, count: int) -> list[brokerkit.Delivery]:
    got = [subscription.receive(timeout=5) for _ in range(count)]
    assert None not in got
    return [d for d in got if d is not None]


def _pending(client: redis.Redis, key: str) -> list[tuple[str, bytes]]:
    return sorted(
        (p["message_id"].decode(), p["consumer"])
        for p in client.xpending_range(key, "g", "-", "+", 100)
    )


def _held(deliveries: Sequence[brokerkit.Delivery], by: str | bytes) -> list[tuple[str, bytes]]:
    """What ``_pending`` lists for ``deliveries`` held by ``by``."""
    name = by.encode() if isinstance(by, str) else by
    return [(d.receipt.entry_id, name) for d in deliveries]


def _take(client: redis.Redis, key: str, deliveries: Sequence[brokerkit.Delivery]) -> None:
    """Another member, "other", claims the entries of ``deliveries``."""
    client.xclaim(key, "g", "other", 0, [d.receipt.entry_id for d in deliveries], justid=True)


def test_a_whole_batch_acked_as_read_is_acked_by_count(
    make: Make, redis_client: redis.Redis, flags: list[str]
) -> None:
    broker = make()
    subscription = broker.subscribe("jobs", group="g", prefetch=3)
    for round_ in range(2):
        broker.publish_many("jobs", [f"{round_}a", f"{round_}b", f"{round_}c"])
        broker.ack(*_batch(subscription, 3))
    assert flags == [COUNT, COUNT]
    key = broker.stream_key("jobs")
    assert _pending(redis_client, key) == []
    # the consumer is made again at once: still listed, holding nothing
    consumers = redis_client.xinfo_consumers(key, "g")
    assert [(c["name"], c["pending"]) for c in consumers] == [(subscription.consumer.encode(), 0)]


def test_a_big_group_is_acked_by_ids_from_its_first_count_on(
    make: Make, redis_client: redis.Redis, flags: list[str]
) -> None:
    """The count's proof walks the members holding something: past COUNT_ACK_MEMBERS
    members the script declines (-1), the ids ack the batch, and the subscription
    sends ids from then on."""
    broker = make()
    subscription = broker.subscribe("jobs", group="g", prefetch=3)
    key = broker.stream_key("jobs")
    for n in range(COUNT_ACK_MEMBERS):
        redis_client.xgroup_createconsumer(key, "g", f"idle-{n}")
    for round_ in range(2):
        broker.publish_many("jobs", [f"{round_}a", f"{round_}b", f"{round_}c"])
        broker.ack(*_batch(subscription, 3))
    assert flags == [COUNT, IDS, IDS]
    assert _pending(redis_client, key) == []


def test_a_whole_batch_with_an_entry_claimed_by_another_member_is_stale_for_it(
    make: Make, redis_client: redis.Redis, flags: list[str]
) -> None:
    broker = make()
    subscription = broker.subscribe("jobs", group="g", prefetch=3)
    broker.publish_many("jobs", ["a", "b", "c"])
    got = _batch(subscription, 3)
    key = broker.stream_key("jobs")
    _take(redis_client, key, got[1:2])
    with pytest.raises(brokerkit.StaleDelivery) as caught:
        broker.ack(*got)
    assert caught.value.deliveries == (got[1],)
    assert flags == [COUNT, IDS]  # not proved held by its count: the ids
    assert _pending(redis_client, key) == _held(got[1:2], "other")


@pytest.mark.parametrize("where", ["above", "below"])
def test_a_claim_that_leaves_the_count_unchanged_is_still_found(
    make: Make, redis_client: redis.Redis, flags: list[str], where: str
) -> None:
    """Another member takes one entry of the batch, and an entry outside the batch
    becomes this consumer's (a later read, a claim): it holds as many entries as the
    batch has, but not the batch, and the ack finds that (the bounds)."""
    broker = make()
    subscription = broker.subscribe("jobs", group="g", prefetch=3)
    key = broker.stream_key("jobs")
    if where == "below":  # an older entry, held by a member that is gone
        broker.publish_many("jobs", ["older"])
        reply = redis_client.xreadgroup("g", "gone", {key: ">"}, count=1)
        extra = reply[0][1][0][0].decode()
    broker.publish_many("jobs", ["a", "b", "c"])
    got = _batch(subscription, 3)
    if where == "above":
        broker.publish_many("jobs", ["later"])
        reply = redis_client.xreadgroup("g", "gone", {key: ">"}, count=1)
        extra = reply[0][1][0][0].decode()
    consumer = got[0].receipt.consumer
    redis_client.xclaim(key, "g", consumer, 0, [extra], justid=True)
    _take(redis_client, key, got[:1])
    with pytest.raises(brokerkit.StaleDelivery) as caught:
        broker.ack(*got)
    assert caught.value.deliveries == (got[0],)
    assert flags == [COUNT, IDS]
    assert _pending(redis_client, key) == sorted(
        [*_held(got[:1], "other"), (extra, consumer.encode())]
    )


def test_part_of_a_batch_or_another_order_is_sent_with_its_ids(
    make: Make, redis_client: redis.Redis, flags: list[str]
) -> None:
    """Only the whole batch, in its order, is sent by count. A part of it would pass
    the count and the bounds here (the entries below it taken by another member, the
    one inside it still held): acked by count, that entry would go too."""
    broker = make()
    subscription = broker.subscribe("jobs", group="g", prefetch=4)
    broker.publish_many("jobs", ["a", "b", "c", "d"])
    got = _batch(subscription, 4)
    key, consumer = broker.stream_key("jobs"), got[0].receipt.consumer
    _take(redis_client, key, got[:2])
    with pytest.raises(brokerkit.StaleDelivery) as caught:
        broker.ack(got[1], got[3])
    assert caught.value.deliveries == (got[1],)
    assert _pending(redis_client, key) == sorted(
        [*_held(got[:2], "other"), *_held(got[2:3], consumer)]
    )
    broker.ack(got[2])
    assert flags == [IDS, IDS]
    broker.publish_many("jobs", ["e", "f", "g"])
    again = _batch(subscription, 3)
    broker.ack(again[1], again[0], again[2])
    assert flags == [IDS, IDS, IDS]
    assert _pending(redis_client, key) == _held(got[:2], "other")


@pytest.mark.parametrize("claimed", [False, True])
def test_a_batch_read_while_a_requeued_entry_was_held_is_proved_not_held(
    make: Make, redis_client: redis.Redis, flags: list[str], claimed: bool
) -> None:
    """A requeued entry, claimed again by this consumer, is held below the next
    batch: that batch's ack by count is not proved (the count; with ``claimed``,
    another member took one entry of the batch, so only the bounds tell), and the
    requeued entry stays held."""
    broker = make()
    subscription = broker.subscribe("jobs", group="g", prefetch=2)
    broker.publish_many("jobs", ["a", "b"])
    first = _batch(subscription, 2)
    first[0].nack(requeue=True)
    first[1].ack()
    again = _batch(subscription, 1)  # the requeued entry, claimed alone
    assert again[0].message.id == first[0].message.id
    broker.publish_many("jobs", ["c", "d"])
    second = _batch(subscription, 2)
    key, consumer = broker.stream_key("jobs"), second[0].receipt.consumer
    if claimed:
        _take(redis_client, key, second[:1])
        with pytest.raises(brokerkit.StaleDelivery):
            broker.ack(*second)
    else:
        broker.ack(*second)
    assert flags[-2:] == [COUNT, IDS]
    assert _pending(redis_client, key) == sorted(
        [*_held(again, consumer), *_held(second[:1] if claimed else [], "other")]
    )
    broker.ack(*again)


@pytest.mark.parametrize("claimed", [False, True])
def test_a_batch_read_while_another_batch_was_held_is_proved_not_held(
    make: Make, redis_client: redis.Redis, flags: list[str], claimed: bool
) -> None:
    broker = make()
    subscription = broker.subscribe("jobs", group="g", prefetch=2)
    broker.publish_many("jobs", ["a", "b", "c", "d"])
    first = _batch(subscription, 2)
    second = _batch(subscription, 2)  # read while the first is held
    key, consumer = broker.stream_key("jobs"), first[0].receipt.consumer
    if claimed:  # this consumer holds two entries, as many as the batch has
        _take(redis_client, key, second)
        with pytest.raises(brokerkit.StaleDelivery):
            broker.ack(*second)
    else:
        broker.ack(*second)
    assert flags == [COUNT, IDS]
    assert _pending(redis_client, key) == sorted(
        [*_held(first, consumer), *_held(second if claimed else [], "other")]
    )
    broker.ack(*first)  # not the last read's batch: its ids
    assert flags == [COUNT, IDS, IDS]


@pytest.mark.parametrize("claimed", [False, True])
def test_the_first_batch_of_a_consumer_name_that_holds_entries_is_proved_not_held(
    make: Make, redis_client: redis.Redis, flags: list[str], claimed: bool
) -> None:
    """A consumer that comes back under a name that still holds entries (a process
    restarted with a fixed name) does not ack them with its first batch."""
    broker = make()
    key = broker.stream_key("jobs")
    broker.publish_many("jobs", ["before"])
    redis_client.xgroup_create(key, "g", id="0")
    reply = redis_client.xreadgroup("g", "fixed", {key: ">"}, count=1)  # held by "fixed"
    before = reply[0][1][0][0].decode()
    subscription = broker.subscribe("jobs", group="g", consumer="fixed", prefetch=2)
    broker.publish_many("jobs", ["a", "b"])
    got = _batch(subscription, 2)
    assert [d.body for d in got] == ["a", "b"]
    if claimed:
        _take(redis_client, key, got[:1])
        with pytest.raises(brokerkit.StaleDelivery):
            broker.ack(*got)
    else:
        broker.ack(*got)
    assert flags == [COUNT, IDS]
    assert _pending(redis_client, key) == sorted(
        [(before, b"fixed"), *_held(got[:1] if claimed else [], "other")]
    )


@pytest.mark.parametrize("delete_acked", [False, True])
def test_a_whole_batch_ack_deletes_entries_every_group_settled(
    make: Make, redis_client: redis.Redis, flags: list[str], delete_acked: bool
) -> None:
    broker = make(delete_acked=delete_acked)
    subscription = broker.subscribe("jobs", group="g", prefetch=2)
    broker.publish_many("jobs", ["a", "b"])
    broker.ack(*_batch(subscription, 2))
    assert flags == (["10"] if delete_acked else [COUNT])  # XDEL needs the ids
    assert redis_client.xlen(broker.stream_key("jobs")) == (0 if delete_acked else 2)
    assert _pending(redis_client, broker.stream_key("jobs")) == []


def test_asyncio_a_whole_batch_late_ack_is_stale_for_the_claimed_entry(
    redis_target: RedisTarget, prefix: str, redis_client: redis.Redis, flags: list[str]
) -> None:
    url = redis_target.url("redis+stream", prefix=prefix)

    async def main() -> None:
        async with brokerkit.aio.connect(url) as broker:
            subscription = await broker.subscribe("jobs", group="g", prefetch=2)
            for round_ in range(2):
                await broker.publish_many("jobs", [f"{round_}a", f"{round_}b"])
                got = [await subscription.receive(timeout=5) for _ in range(2)]
                assert None not in got
                deliveries = [d for d in got if d is not None]
                if round_ == 0:
                    await broker.ack(*deliveries)
                    continue
                key = broker.stream_key("jobs")
                taken = deliveries[1].receipt.entry_id
                redis_client.xclaim(key, "g", "other", 0, [taken], justid=True)
                with pytest.raises(brokerkit.StaleDelivery) as caught:
                    await broker.ack(*deliveries)
                assert caught.value.deliveries == (deliveries[1],)
                assert _pending(redis_client, key) == [(taken, b"other")]
            assert flags == [COUNT, COUNT, IDS]

    run(main())


def test_a_held_deleted_entry_inside_a_rewound_batch_is_acked_with_it(
    make: Make, redis_client: redis.Redis, flags: list[str]
) -> None:
    """The one case the proof lets through (see ack_script.ACK): this consumer holds an
    entry that was deleted, and its group is moved back; the next read hands out the
    entries around the deleted one, and another member claims one of them. The count
    and the bounds match, so the batch is acked by count: the other member's entry
    stays its own (only this consumer's pending entries are acked), but its late ack
    is not reported stale; the deleted entry is acked with the batch, and its own
    delivery's ack then finds it gone."""
    broker = make()
    subscription = broker.subscribe("jobs", group="g", prefetch=10)
    broker.publish_many("jobs", ["w1", "w2", "w3"])
    broker.ack(*_batch(subscription, 3))
    broker.publish_many("jobs", ["held"])
    held = _batch(subscription, 1)
    broker.delete_entries("jobs", held[0].receipt.entry_id)
    broker.publish_many("jobs", ["x", "y"])
    broker.set_group_position("jobs", "g", "earliest")
    again = _batch(subscription, 5)  # w1, w2, w3, x, y: around the deleted entry
    assert [d.body for d in again] == ["w1", "w2", "w3", "x", "y"]
    key = broker.stream_key("jobs")
    _take(redis_client, key, again[3:4])
    broker.ack(*again)  # no StaleDelivery for again[3]: the missed report
    assert flags[-1] == COUNT
    assert _pending(redis_client, key) == _held(again[3:4], "other")
    with pytest.raises(brokerkit.StaleDelivery):
        held[0].ack()


def test_small_acks_are_sent_with_their_ids(
    make: Make, redis_client: redis.Redis, flags: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settle, "WHOLE_BATCH", 3)
    broker = make()
    subscription = broker.subscribe("jobs", group="g", prefetch=2)
    broker.publish_many("jobs", ["a", "b", "c"])
    broker.ack(*_batch(subscription, 2))
    broker.ack(*_batch(subscription, 1))
    assert flags == [IDS, IDS]
    assert _pending(redis_client, broker.stream_key("jobs")) == []


def test_a_count_ack_whose_reply_was_lost_is_retried_without_stale_deliveries(
    make: Make, redis_client: redis.Redis, flags: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ack by count ran, and its reply was lost with the connection: the retry
    finds nothing held (no count to prove), and the ids' call that follows is a retry
    too, so the entries it finds pending for nobody were acked, not stale."""
    spy = settle.run_scripts
    lost: list[bool] = []

    def lose_first_reply(client: Any, calls: Any) -> Any:
        replies = spy(client, calls)
        if not lost and calls[0][2][2] == COUNT:
            lost.append(True)
            raise redis.ConnectionError("the reply was lost")
        return replies

    monkeypatch.setattr(settle, "run_scripts", lose_first_reply)
    broker = make()
    subscription = broker.subscribe("jobs", group="g", prefetch=3)
    broker.publish_many("jobs", ["a", "b", "c"])
    got = _batch(subscription, 3)
    broker.ack(*got)
    assert lost and flags == [COUNT, "011", "01"]
    assert all(d.settled for d in got)
    assert _pending(redis_client, broker.stream_key("jobs")) == []


def test_a_count_ack_not_proved_under_a_replica_timeout_is_acked_by_its_ids(
    redis_target: RedisTarget, prefix: str, redis_client: redis.Redis, flags: list[str]
) -> None:
    """With ``replicas``, a ReplicationTimeout says the ack was applied on the master:
    a batch its count did not prove held is acked by its ids all the same (the count
    call's reply comes back with the timeout: the ids' call is no retry), and the one
    error names the entry another member claimed."""
    url = redis_target.url("redis+stream", prefix=prefix, replicas="1", replica_timeout="0.01")
    with brokerkit.connect(url) as broker:  # no replica: every write times out
        subscription = broker.subscribe("jobs", group="g", prefetch=3)
        with pytest.raises(brokerkit.ReplicationTimeout):
            broker.publish_many("jobs", ["a", "b", "c"])
        got = _batch(subscription, 3)
        key = broker.stream_key("jobs")
        _take(redis_client, key, got[1:2])
        with pytest.raises(
            brokerkit.ReplicationTimeout, match=f"Not settled by it: message {got[1].id}"
        ):
            broker.ack(*got)
        assert flags == [COUNT, IDS]
        assert _pending(redis_client, key) == _held(got[1:2], "other")
