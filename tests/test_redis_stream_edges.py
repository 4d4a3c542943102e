"""redis+stream against a real redis-server: entries trimmed away while pending (a
renewal leaves them for the ack; a requeue, delay or hand-back counts them lost),
the in-flight age of ``inspect`` beside requeued entries, and log reads over RESP3."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
import redis

import brokerkit
import brokerkit.aio
from brokerkit import StaleDelivery
from brokerkit.backends.redis.stream import RedisStreamBroker
from tests.conftest import RedisTarget
from tests.redis_stream_aio_support import PROMPT, run

Make = Callable[..., RedisStreamBroker]

#: A lease no heartbeat renews while a test runs (a beat every 200 s).
LONG_LEASE = 600


@pytest.fixture
def make(redis_broker: Callable[..., Any]) -> Make:
    """``make(**options)``: a new redis+stream broker under this test's prefix."""
    return functools.partial(redis_broker, "redis+stream", visibility_timeout=LONG_LEASE)


def _pending(client: redis.Redis, key: str) -> dict[str, int]:
    """Each pending entry of group ``g``: its id and idle ms."""
    rows = client.xpending_range(key, "g", "-", "+", 100)
    return {r["message_id"].decode(): int(r["time_since_delivered"]) for r in rows}


# -- entries trimmed while pending ------------------------------------------------------


def test_entries_trimmed_or_deleted_while_held_are_counted_lost_by_a_renewal(
    make: Make, redis_client: redis.Redis
) -> None:
    """Redis 7's XCLAIM drops a gone entry from the pending entries list: the renewal
    counts it lost and reports it stale (never in silence), and renews the rest."""
    broker = make()
    subscription = broker.subscribe("jobs", group="g", prefetch=4)
    broker.publish_many("jobs", ["trimmed", "kept", "deleted", "last"])
    held = [subscription.receive(timeout=PROMPT) for _ in range(4)]
    assert all(d is not None for d in held)
    trimmed, kept, deleted, last = held
    key = broker.stream_key("jobs")
    ids = [d.receipt.entry_id for d in held]
    assert redis_client.xtrim(key, minid=ids[1], approximate=False) == 1
    assert redis_client.xdel(key, ids[2]) == 1
    # those still there idle for an hour: the renewal must bring them back to 0
    there = [ids[1], ids[3]]
    redis_client.xclaim(key, "g", kept.receipt.consumer, 0, there, idle=3_600_000, justid=True)
    with pytest.raises(StaleDelivery, match="trimmed away") as raised:
        broker.extend(*held)  # the heartbeat's script, over all at once
    assert {d.id for d in raised.value.deliveries} == {trimmed.id, deleted.id}
    pending = _pending(redis_client, key)
    assert set(pending) == set(there)
    assert all(pending[i] < 60_000 for i in there)
    assert broker.inspect("jobs").lost_to_trimming == 2
    broker.ack(kept, last)
    assert broker.inspect("jobs").in_flight == 0


@pytest.mark.parametrize("delay", [None, 0.5])
def test_a_requeue_of_an_entry_trimmed_while_held_counts_it_lost(
    make: Make, redis_client: redis.Redis, delay: float | None
) -> None:
    broker = make()
    subscription = broker.subscribe("jobs", group="g")
    broker.publish("jobs", "x")
    delivery = subscription.receive(timeout=PROMPT)
    assert delivery is not None
    key = broker.stream_key("jobs")
    assert redis_client.xtrim(key, maxlen=0) == 1
    assert broker.inspect("jobs").trimmed_pending == 1
    delivery.nack(requeue=True, delay=delay)
    info = broker.inspect("jobs")
    assert info.lost_to_trimming == 1 and info.groups[0].lost_to_trimming == 1
    assert info.in_flight == 0 and info.scheduled == 0 and info.trimmed_pending == 0
    assert _pending(redis_client, key) == {}


def test_a_hand_back_of_an_entry_trimmed_while_prefetched_counts_it_lost(
    make: Make, redis_client: redis.Redis
) -> None:
    broker = make()
    subscription = broker.subscribe("jobs", group="g", prefetch=2)
    broker.publish_many("jobs", ["handled", "prefetched"])
    delivery = subscription.receive(timeout=PROMPT)
    assert delivery is not None
    key = broker.stream_key("jobs")
    assert len(_pending(redis_client, key)) == 2  # the second waits in the buffer
    delivery.ack()
    assert redis_client.xtrim(key, maxlen=0) == 2
    subscription.close()  # hands the prefetched entry back
    info = broker.inspect("jobs")
    assert info.lost_to_trimming == 1 and info.in_flight == 0
    assert _pending(redis_client, key) == {}


# -- inspect: the in-flight age ---------------------------------------------------------


def test_oldest_in_flight_age_is_the_longest_idle_and_leaves_out_requeued_entries(
    make: Make, redis_client: redis.Redis
) -> None:
    broker = make()
    subscription = broker.subscribe("jobs", group="g", prefetch=3)
    broker.publish_many("jobs", [0, 1, 2])
    first, second = subscription.receive(timeout=PROMPT), subscription.receive(timeout=PROMPT)
    assert first is not None and second is not None
    first.nack(requeue=True)  # waits, backdated to the epoch, for any member to claim it
    info = broker.inspect("jobs")
    assert info.in_flight == 3  # a requeued entry counts as pending (see the docs)
    assert info.oldest_in_flight_age is not None and info.oldest_in_flight_age < 60
    # the highest id, prefetched, idle for an hour: its age, not the lowest id's
    key = broker.stream_key("jobs")
    last = max(_pending(redis_client, key), key=lambda i: tuple(map(int, i.split("-"))))
    redis_client.xclaim(key, "g", second.receipt.consumer, 0, [last], idle=3_600_000, justid=True)
    age = broker.inspect("jobs").oldest_in_flight_age
    assert age is not None and 3600 <= age < 3660
    second.ack()
    subscription.close()  # hands the prefetched entry back, backdated too
    info = broker.inspect("jobs")
    assert info.in_flight == 2 and info.oldest_in_flight_age is None


def test_oldest_in_flight_age_reads_a_pending_entries_list_of_more_than_a_page(
    make: Make, redis_client: redis.Redis
) -> None:
    broker = make()
    broker.create_group("jobs", "g")
    broker.publish_many("jobs", range(1001))
    key = broker.stream_key("jobs")
    read = redis_client.xreadgroup("g", "c", {key: ">"}, count=1001)
    last = read[0][1][-1][0]  # the 1,001st: on the second page of 1,000
    redis_client.xclaim(key, "g", "c", 0, [last], idle=3_600_000, justid=True)
    info = broker.inspect("jobs")
    assert info.in_flight == 1001
    assert info.oldest_in_flight_age is not None and 3600 <= info.oldest_in_flight_age < 3660


# -- RESP3 -----------------------------------------------------------------------------


def test_read_and_tail_work_over_resp3(redis_target: RedisTarget, prefix: str) -> None:
    url = redis_target.url("redis+stream", prefix=prefix, protocol="3")
    with brokerkit.connect(url) as broker:
        assert broker.read("log") == []
        broker.publish_many("log", ["a", "b", "c"])
        page = broker.read("log", count=2)
        assert [e.message.body for e in page] == ["a", "b"]
        assert [e.message.body for e in broker.read("log", after=page[-1].position)] == ["c"]
        assert [e.message.body for e in broker.tail("log", timeout=0.2)] == ["a", "b", "c"]

    async def main() -> None:
        async with brokerkit.aio.connect(url) as broker:
            assert [e.message.body for e in await broker.read("log")] == ["a", "b", "c"]
            tail = await broker.tail("log", after="latest", timeout=1)
            await broker.publish("log", "new")
            assert [e.message.body async for e in tail] == ["new"]

    run(main())


def test_a_group_made_again_after_delete_group_starts_afresh(
    make: Make, redis_client: redis.Redis
) -> None:
    """delete_group takes what the backend keeps for the group with it: a retry held
    for an hour does not hold the new group's plain nack of the same entry."""
    broker = make()
    broker.create_group("jobs", "g")
    broker.publish("jobs", "job")
    with broker.subscribe("jobs", group="g") as subscription:
        delivery = subscription.receive(timeout=PROMPT)
        assert delivery is not None
        delivery.nack(delay=3600)
    assert broker.inspect("jobs").scheduled == 1
    assert broker.delete_group("jobs", "g")
    assert redis_client.keys(f"{broker._keys.topic('jobs', '*')}") == []  # type: ignore[attr-defined]
    broker.create_group("jobs", "g")
    with broker.subscribe("jobs", group="g") as subscription:
        delivery = subscription.receive(timeout=PROMPT)
        assert delivery is not None and delivery.attempt == 1
        assert broker.inspect("jobs").scheduled == 0
        delivery.nack()
        again = subscription.receive(timeout=PROMPT)
        assert again is not None and again.id == delivery.id, "the plain nack was held"
        again.ack()
