"""redis+stream acks against a real redis-server: every ack checks, on the server, that
the entry is still this consumer's, however soon after the fetch it comes (see
``stream/settle_async.py``), and big settlements run in chunks."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
import redis

import brokerkit
from brokerkit.backends.redis.stream import RedisStreamBroker, settle
from tests.redis_stream_aio_support import claim_once_idle

Make = Callable[..., RedisStreamBroker]


@pytest.fixture
def make(redis_broker: Callable[..., Any]) -> Make:
    """``make(**options)``: a new redis+stream broker under this test's prefix."""
    return functools.partial(redis_broker, "redis+stream")


def test_an_ack_after_extend_shortened_the_lease_checks_ownership(
    make: Make, redis_client: redis.Redis
) -> None:
    vt = 30.0
    broker = make(visibility_timeout=vt)
    broker.publish("jobs", "x")
    delivery = broker.subscribe("jobs", group="g").receive(timeout=5)
    assert delivery is not None
    broker._suspend_renewals()  # the consumer hangs after the extend
    delivery.extend(seconds=0.3)  # far less than the visibility timeout
    key, entry = broker.stream_key("jobs"), delivery.receipt.entry_id
    claim_once_idle(redis_client, key, entry, int(vt * 1000))
    with pytest.raises(brokerkit.StaleDelivery):
        delivery.ack()
    pending = redis_client.xpending_range(key, "g", "-", "+", 10)
    assert [(p["message_id"], p["consumer"]) for p in pending] == [(entry.encode(), b"other")]


def test_an_ack_of_an_entry_no_longer_pending_is_stale(
    make: Make, redis_client: redis.Redis
) -> None:
    broker = make()
    broker.publish("jobs", "x")
    delivery = broker.subscribe("jobs", group="g").receive(timeout=5)
    assert delivery is not None
    # The group is deleted and made again (or the server lost it): nothing is pending.
    key = broker.stream_key("jobs")
    redis_client.xgroup_destroy(key, "g")
    redis_client.xgroup_create(key, "g", id="$")
    with pytest.raises(brokerkit.StaleDelivery):
        delivery.ack()


def test_an_ack_right_after_the_fetch_never_takes_another_members_claim(
    make: Make, redis_client: redis.Redis
) -> None:
    """However young the delivery, an ack whose entry another member holds now (a
    claim by hand, or a failover to a replica that never saw this delivery) is stale
    and leaves that member's copy alone: the client cannot know it from the clock."""
    broker = make(visibility_timeout=30)
    broker.publish("jobs", "x")
    delivery = broker.subscribe("jobs", group="g").receive(timeout=5)
    assert delivery is not None
    key, entry = broker.stream_key("jobs"), delivery.receipt.entry_id
    redis_client.xclaim(key, "g", "other", 0, [entry], justid=True)
    with pytest.raises(brokerkit.StaleDelivery):
        delivery.ack()
    pending = redis_client.xpending_range(key, "g", "-", "+", 10)
    assert [(p["message_id"], p["consumer"]) for p in pending] == [(entry.encode(), b"other")]


def test_settling_many_entries_runs_in_chunks_and_finds_the_stale_ones(
    make: Make, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settle, "ACK_CHUNK", 3)
    monkeypatch.setattr(settle, "RENEW_CHUNK", 2)
    calls: list[list[Any]] = []
    real = settle.run_scripts

    def counted(client: Any, batch: Any) -> list[Any]:
        calls.append([script for script, _, _ in batch])
        return real(client, batch)

    monkeypatch.setattr(settle, "run_scripts", counted)
    broker = make()
    broker.publish_many("jobs", [f"job {i}" for i in range(10)])
    subscription = broker.subscribe("jobs", group="g", prefetch=10)
    got = [d for d in (subscription.receive(timeout=5) for _ in range(10)) if d is not None]
    assert len(got) == 10
    key = broker.stream_key("jobs")
    taken = [got[2], got[7]]
    for delivery in taken:  # another member holds these now
        redis_client.xclaim(key, "g", "other", 0, [delivery.receipt.entry_id], justid=True)
    with pytest.raises(brokerkit.StaleDelivery) as caught:
        broker.extend(*got, seconds=20)
    assert set(caught.value.deliveries) == set(taken)
    assert calls[-1] == [broker._scripts.renew] * 5
    with pytest.raises(brokerkit.StaleDelivery) as caught:
        broker.ack(*got[:2], *got[3:])
    assert caught.value.deliveries == (got[7],)
    assert calls[-1] == [broker._scripts.ack] * 3
    pending = redis_client.xpending_range(key, "g", "-", "+", 20)
    assert sorted((p["message_id"].decode(), p["consumer"]) for p in pending) == sorted(
        (d.receipt.entry_id, b"other") for d in taken
    )


def test_one_ack_settles_the_deliveries_of_several_topics_groups_and_members(
    make: Make, redis_client: redis.Redis
) -> None:
    broker = make()
    broker.publish_many("a", [b"1", b"2"])
    broker.publish("b", b"3")
    subscriptions = [
        broker.subscribe("a", group="g1", prefetch=2),
        broker.subscribe("a", group="g2"),
        broker.subscribe("a", group="g2"),
        broker.subscribe("b", group="g1"),
    ]
    got = [subscriptions[0].receive(timeout=5), subscriptions[0].receive(timeout=5)]
    got += [subscriptions[1].receive(timeout=5), subscriptions[2].receive(timeout=5)]
    got.append(subscriptions[3].receive(timeout=5))
    deliveries = [d for d in got if d is not None]
    assert len(deliveries) == 5
    assert len({d.receipt.consumer for d in deliveries[2:4]}) == 2  # g2's two members
    # Interleaved, so that no member's deliveries come together.
    broker.ack(*deliveries[::2], *deliveries[1::2])
    for topic, group in [("a", "g1"), ("a", "g2"), ("b", "g1")]:
        assert redis_client.xpending(broker.stream_key(topic), group)["pending"] == 0
    assert all(d.settled for d in deliveries)


@pytest.mark.parametrize("delete_acked", [False, True])
def test_an_ack_settles_exactly_its_entries_in_any_order_and_any_part_of_a_batch(
    make: Make, redis_client: redis.Redis, delete_acked: bool
) -> None:
    broker = make(delete_acked=delete_acked)
    broker.publish_many("jobs", [f"job {i}" for i in range(6)])
    subscription = broker.subscribe("jobs", group="g", prefetch=6)
    got = [d for d in (subscription.receive(timeout=5) for _ in range(6)) if d is not None]
    assert len(got) == 6
    key = broker.stream_key("jobs")

    def pending() -> list[str]:
        return [
            p["message_id"].decode() for p in redis_client.xpending_range(key, "g", "-", "+", 10)
        ]

    def stored() -> list[str]:
        return [entry_id.decode() for entry_id, _ in redis_client.xrange(key)]

    ids = [d.receipt.entry_id for d in got]
    broker.ack(got[4], got[1])  # out of order, with held entries between them
    assert pending() == [ids[i] for i in (0, 2, 3, 5)]
    assert stored() == ([ids[i] for i in (0, 2, 3, 5)] if delete_acked else ids)
    broker.ack(got[2], got[3])  # in order, exactly what the range holds
    assert pending() == [ids[0], ids[5]]
    broker.ack(got[0], got[5])
    assert pending() == []
    assert stored() == ([] if delete_acked else ids)


def test_an_extension_of_a_few_among_many_held_checks_each_one(
    make: Make, redis_client: redis.Redis
) -> None:
    """The renewal script lists what the consumer holds between the lowest and highest
    id it names (one XPENDING, cut at a limit of about twice the ids) and renews them
    with one XCLAIM: ids named out of order, a range cut short by the 300 entries held
    between them, and one entry another member claimed, which alone is stale."""
    broker = make()
    broker.publish_many("jobs", range(300))
    subscription = broker.subscribe("jobs", group="g", prefetch=300)
    held = [subscription.receive(timeout=5) for _ in range(300)]
    assert all(held) and subscription.buffered == 0
    broker._suspend_renewals()
    key = broker.stream_key("jobs")
    first, middle, last = held[0], held[150], held[-1]
    ids = [d.receipt.entry_id for d in (first, middle, last)]  # type: ignore[union-attr]
    redis_client.xclaim(key, "g", "other", 0, [ids[1]], justid=True)
    aged = 100_000
    redis_client.xclaim(
        key, "g", subscription.consumer, 0, [ids[0], ids[2]], idle=aged, justid=True
    )
    with pytest.raises(brokerkit.StaleDelivery) as caught:
        broker.extend(last, middle, first)  # type: ignore[arg-type]
    assert caught.value.deliveries == (middle,)
    pending = {
        p["message_id"].decode(): (p["consumer"], p["time_since_delivered"])
        for p in redis_client.xpending_range(key, "g", "-", "+", 1000)
    }
    assert pending[ids[1]][0] == b"other"
    for entry in (ids[0], ids[2]):
        owner, idle = pending[entry]
        assert owner == subscription.consumer.encode() and idle < aged
    broker.ack(*[d for d in held if d is not middle])  # type: ignore[misc]
