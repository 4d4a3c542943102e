"""redis+stream acks of one whole read batch, against a real redis-server: such an ack
skips listing the batch's range (see ``scripts.ACK``) only while the server proves
this consumer holds exactly the batch, so a late ack never takes another member's
claim, whatever claimed, read or was handed back between the read and the ack."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
import redis

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis.stream import RedisStreamBroker, settle, settle_async
from brokerkit.backends.redis.stream.scripts import ACK
from tests.conftest import RedisTarget
from tests.redis_stream_aio_support import run

Make = Callable[..., RedisStreamBroker]


@pytest.fixture
def make(redis_broker: Callable[..., Any]) -> Make:
    """``make(**options)``: a new redis+stream broker under this test's prefix."""
    return functools.partial(redis_broker, "redis+stream")


@pytest.fixture
def flags(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The flags of every ack script call (delete, retry, whole, report), in order;
    batches of any size may be acked whole (the tests' batches are small)."""
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
    return [
        (p["message_id"].decode(), p["consumer"])
        for p in client.xpending_range(key, "g", "-", "+", 100)
    ]


def _warm(broker: RedisStreamBroker, subscription: brokerkit.Subscription) -> None:
    """A first batch acked: the ack finds the pending list empty, so the next read's
    batch may be acked whole."""
    broker.publish_many("jobs", ["w1", "w2", "w3"])
    broker.ack(*_batch(subscription, 3))


def test_a_whole_batch_acked_as_read_is_acked_whole(
    make: Make, redis_client: redis.Redis, flags: list[str]
) -> None:
    broker = make()
    subscription = broker.subscribe("jobs", group="g", prefetch=3)
    _warm(broker, subscription)
    broker.publish_many("jobs", ["a", "b", "c"])
    broker.ack(*_batch(subscription, 3))
    broker.publish_many("jobs", ["d", "e", "f"])
    broker.ack(*_batch(subscription, 3))
    assert flags == ["00111"] * 3  # counts, not ids; a new consumer holds nothing
    assert _pending(redis_client, broker.stream_key("jobs")) == []


def test_a_whole_batch_with_an_entry_claimed_by_another_member_is_stale_for_it(
    make: Make, redis_client: redis.Redis, flags: list[str]
) -> None:
    broker = make()
    subscription = broker.subscribe("jobs", group="g", prefetch=3)
    _warm(broker, subscription)
    broker.publish_many("jobs", ["a", "b", "c"])
    got = _batch(subscription, 3)
    key, taken = broker.stream_key("jobs"), got[1].receipt.entry_id
    redis_client.xclaim(key, "g", "other", 0, [taken], justid=True)
    with pytest.raises(brokerkit.StaleDelivery) as caught:
        broker.ack(*got)
    assert caught.value.deliveries == (got[1],)
    assert flags[-2:] == ["00111", "0001"]  # not proved held by the count: the ids
    assert _pending(redis_client, key) == [(taken, b"other")]


@pytest.mark.parametrize("where", ["above", "below"])
def test_a_claim_that_leaves_the_count_unchanged_is_still_found(
    make: Make, redis_client: redis.Redis, flags: list[str], where: str
) -> None:
    """Another member takes one entry of the batch, and an entry outside the batch
    becomes this consumer's (a later read, a claim): it holds as many entries as the
    batch has, but not the batch, and the ack finds that."""
    broker = make()
    subscription = broker.subscribe("jobs", group="g", prefetch=3)
    _warm(broker, subscription)
    key = broker.stream_key("jobs")
    if where == "below":  # an older entry, held by a member that is gone
        broker.publish_many("jobs", ["older"])
        reply = redis_client.xreadgroup("g", "gone", {key: ">"}, count=1)
        older_entry = reply[0][1][0][0].decode()
    broker.publish_many("jobs", ["a", "b", "c"])
    if where == "below":
        # read around the older entry, as the group's position was past it
        got = _batch(subscription, 3)
        extra = older_entry
    else:
        got = _batch(subscription, 3)
        broker.publish_many("jobs", ["later"])
        reply = redis_client.xreadgroup("g", "gone", {key: ">"}, count=1)
        extra = reply[0][1][0][0].decode()
    consumer = got[0].receipt.consumer
    redis_client.xclaim(key, "g", consumer, 0, [extra], justid=True)
    taken = got[0].receipt.entry_id
    redis_client.xclaim(key, "g", "other", 0, [taken], justid=True)
    with pytest.raises(brokerkit.StaleDelivery) as caught:
        broker.ack(*got)
    assert caught.value.deliveries == (got[0],)
    assert flags[-2:] == ["00111", "0001"]
    assert sorted(_pending(redis_client, key)) == sorted(
        [(taken, b"other"), (extra, consumer.encode())]
    )


def test_part_of_a_batch_or_another_order_is_not_acked_whole(
    make: Make, redis_client: redis.Redis, flags: list[str]
) -> None:
    broker = make()
    subscription = broker.subscribe("jobs", group="g", prefetch=4)
    _warm(broker, subscription)
    broker.publish_many("jobs", ["a", "b", "c", "d"])
    got = _batch(subscription, 4)
    broker.ack(got[1], got[0])
    broker.ack(*got[2:])
    assert [f[2] for f in flags[1:]] == ["0", "0"]
    assert _pending(redis_client, broker.stream_key("jobs")) == []


def test_a_batch_read_after_a_requeue_is_not_acked_whole_until_the_list_is_empty(
    make: Make, redis_client: redis.Redis, flags: list[str]
) -> None:
    """A requeued entry stays this consumer's until a member claims it: the batches
    read meanwhile take the usual path, and once an ack finds nothing left pending
    the next batch is acked whole again."""
    broker = make()
    subscription = broker.subscribe("jobs", group="g", prefetch=2)
    _warm(broker, subscription)
    broker.publish_many("jobs", ["a", "b"])
    first = _batch(subscription, 2)
    first[0].nack(requeue=True)
    first[1].ack()
    again = _batch(subscription, 1)  # the requeued entry, claimed alone
    assert again[0].message.id == first[0].message.id
    broker.publish_many("jobs", ["c", "d"])
    second = _batch(subscription, 2)
    broker.ack(*again)
    broker.ack(*second)  # read while the requeued entry was held: the usual path
    broker.publish_many("jobs", ["e", "f"])
    broker.ack(*_batch(subscription, 2))
    assert [f[2] for f in flags[1:]] == ["0", "0", "0", "1"]
    assert _pending(redis_client, broker.stream_key("jobs")) == []


def test_a_batch_read_while_another_batch_was_held_is_not_acked_whole(
    make: Make, redis_client: redis.Redis, flags: list[str]
) -> None:
    broker = make()
    subscription = broker.subscribe("jobs", group="g", prefetch=2)
    _warm(broker, subscription)
    broker.publish_many("jobs", ["a", "b", "c", "d"])
    first = _batch(subscription, 2)
    second = _batch(subscription, 2)  # read while the first is held
    broker.ack(*second)
    broker.ack(*first)
    assert [f[2] for f in flags[1:]] == ["0", "0"]
    assert _pending(redis_client, broker.stream_key("jobs")) == []


@pytest.mark.parametrize("delete_acked", [False, True])
def test_a_whole_batch_ack_deletes_entries_every_group_settled(
    make: Make, redis_client: redis.Redis, flags: list[str], delete_acked: bool
) -> None:
    broker = make(delete_acked=delete_acked)
    subscription = broker.subscribe("jobs", group="g", prefetch=2)
    _warm(broker, subscription)
    broker.publish_many("jobs", ["a", "b"])
    broker.ack(*_batch(subscription, 2))
    assert flags[-1] == ("1011" if delete_acked else "00111")  # XDEL needs the ids
    assert redis_client.xlen(broker.stream_key("jobs")) == (0 if delete_acked else 5)


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
            assert flags == ["00111", "00111", "0001"]

    run(main())


def test_a_batch_read_past_a_held_deleted_entry_after_a_rewind_is_not_acked_whole(
    make: Make, redis_client: redis.Redis, flags: list[str]
) -> None:
    """This consumer holds an entry that was deleted, and its group is moved back: the
    next read hands out the entries around the deleted one, which this consumer holds
    all the same. Were that batch acked whole, an entry of it that another member
    claimed would be missed (the count and the bounds match); it is not, because the
    read came while something was held."""
    broker = make()
    subscription = broker.subscribe("jobs", group="g", prefetch=10)
    _warm(broker, subscription)
    broker.publish_many("jobs", ["held"])
    held = _batch(subscription, 1)
    broker.delete_entries("jobs", held[0].receipt.entry_id)
    broker.publish_many("jobs", ["x", "y"])
    broker.set_group_position("jobs", "g", "earliest")
    again = _batch(subscription, 5)  # w1, w2, w3, x, y: around the deleted entry
    key, taken = broker.stream_key("jobs"), again[3].receipt.entry_id
    redis_client.xclaim(key, "g", "other", 0, [taken], justid=True)
    with pytest.raises(brokerkit.StaleDelivery) as caught:
        broker.ack(*again)
    assert caught.value.deliveries == (again[3],)
    assert flags[-1][2] == "0"
    assert (taken, b"other") in _pending(redis_client, key)


def test_the_first_batch_of_a_consumer_name_that_holds_entries_is_not_acked_whole(
    make: Make, redis_client: redis.Redis, flags: list[str]
) -> None:
    """A consumer that comes back under a name that still holds entries (a process
    restarted with a fixed name) does not start from an empty pending list."""
    broker = make()
    key = broker.stream_key("jobs")
    broker.publish_many("jobs", ["before"])
    redis_client.xgroup_create(key, "g", id="0")
    redis_client.xreadgroup("g", "fixed", {key: ">"}, count=1)  # held by "fixed"
    subscription = broker.subscribe("jobs", group="g", consumer="fixed", prefetch=2)
    broker.publish_many("jobs", ["a", "b"])
    got = _batch(subscription, 2)
    assert [d.body for d in got] == ["a", "b"]
    broker.ack(*got)
    assert flags == ["0001"]


def test_small_acks_ask_for_no_count_and_are_never_acked_whole(
    make: Make, redis_client: redis.Redis, flags: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settle, "WHOLE_BATCH", 3)
    broker = make()
    subscription = broker.subscribe("jobs", group="g", prefetch=2)
    broker.publish_many("jobs", ["a", "b", "c"])
    broker.ack(*_batch(subscription, 2))
    broker.ack(*_batch(subscription, 1))
    assert flags == ["0000", "0000"]
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
        if not lost and calls[0][2][2] == "00111":
            lost.append(True)
            raise redis.ConnectionError("the reply was lost")
        return replies

    monkeypatch.setattr(settle, "run_scripts", lose_first_reply)
    broker = make()
    subscription = broker.subscribe("jobs", group="g", prefetch=3)
    broker.publish_many("jobs", ["a", "b", "c"])
    got = _batch(subscription, 3)
    broker.ack(*got)
    assert lost and flags == ["00111", "01111", "0101"]
    assert all(d.settled for d in got)
    assert _pending(redis_client, broker.stream_key("jobs")) == []
