"""redis+stream acks against a real redis-server: a delivery whose lease is known to
run for a long while yet is acked with a plain XACK, every other ack checks that the
entry is still this consumer's first (see ``stream/settle_async.py``)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

import brokerkit
from brokerkit.backends.redis.stream import RedisStreamBroker, settle

Make = Callable[..., RedisStreamBroker]

#: Slack for a lease to run out on a slow machine.
GRACE = 5.0


@pytest.fixture
def make(redis_broker: Callable[..., Any]) -> Make:
    """``make(**options)``: a new redis+stream broker under this test's prefix."""
    return functools.partial(redis_broker, "redis+stream")


def _count_ack_scripts(broker: RedisStreamBroker) -> list[int]:
    """Count the runs of the ownership-checking ack script from now on."""
    runs: list[int] = []
    script = broker._scripts.ack

    def counted(*args: Any, **kwargs: Any) -> Any:
        runs.append(1)
        return script(*args, **kwargs)

    counted.sha = script.sha  # type: ignore[attr-defined]
    broker._scripts.ack = counted  # type: ignore[assignment]
    return runs


def _claim_once_idle(client: redis.Redis, key: str, entry: str, idle_ms: int) -> None:
    """Claim ``entry`` for consumer ``other`` once it has been idle ``idle_ms``, as
    XAUTOCLAIM does after a lease ran out."""
    deadline = time.monotonic() + GRACE
    while not client.xclaim(key, "g", "other", idle_ms, [entry], justid=True):
        assert time.monotonic() < deadline, "the lease never ran out"
        time.sleep(0.02)  # polling with a deadline, not synchronisation


def test_an_ack_well_within_the_lease_is_a_plain_xack(
    make: Make, redis_client: redis.Redis
) -> None:
    broker = make()
    broker.publish_many("jobs", ["a", "b", "c"])
    subscription = broker.subscribe("jobs", group="g", prefetch=3)
    got = [subscription.receive(timeout=5) for _ in range(3)]
    runs = _count_ack_scripts(broker)
    broker.ack(*[d for d in got if d is not None])
    assert runs == [], "a delivery fetched a moment ago was acked by the checking script"
    assert redis_client.xpending(broker.stream_key("jobs"), "g")["pending"] == 0


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
    _claim_once_idle(redis_client, key, entry, int(vt * 1000))
    with pytest.raises(brokerkit.StaleDelivery):
        delivery.ack()
    pending = redis_client.xpending_range(key, "g", "-", "+", 10)
    assert [(p["message_id"], p["consumer"]) for p in pending] == [(entry.encode(), b"other")]


def test_a_plain_ack_of_an_entry_no_longer_pending_is_stale(
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
    runs = _count_ack_scripts(broker)
    with pytest.raises(brokerkit.StaleDelivery):
        delivery.ack()
    assert runs == []


def test_an_ack_retried_after_a_lost_connection_checks_ownership(
    make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = make()
    broker.publish("jobs", "x")
    delivery = broker.subscribe("jobs", group="g").receive(timeout=5)
    assert delivery is not None
    attempts: list[list[Any]] = []
    real = settle.run_scripts

    def flaky(client: Any, calls: Any) -> list[Any]:
        attempts.append([script for script, _, _ in calls])
        if len(attempts) == 1:
            raise redis.ConnectionError("lost before it was sent")
        return real(client, calls)

    monkeypatch.setattr(settle, "run_scripts", flaky)
    delivery.ack()
    assert attempts[0] == [None], "the first attempt is a plain XACK"
    assert attempts[1] == [broker._scripts.ack], "a retry, maybe late, checks ownership"


def test_settling_many_entries_runs_in_chunks_and_finds_the_stale_ones(
    make: Make, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settle, "PLAIN_ACK_CHUNK", 4)
    monkeypatch.setattr(settle, "ACK_CHUNK", 3)
    monkeypatch.setattr(settle, "RENEW_CHUNK", 2)
    calls: list[list[Any]] = []
    real = settle.run_scripts

    def counted(client: Any, batch: Any) -> list[Any]:
        calls.append([args[0] if script is None else script for script, _, args in batch])
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
    for delivery in got[5:]:  # as if held past half their lease: acks check them
        subscription.state.plain_ack_until.pop(delivery.receipt.entry_id, None)
    with pytest.raises(brokerkit.StaleDelivery) as caught:
        broker.ack(*got[:2], *got[3:])
    assert caught.value.deliveries == (got[7],)
    assert calls[-1] == ["XACK", broker._scripts.ack, broker._scripts.ack]
    pending = redis_client.xpending_range(key, "g", "-", "+", 20)
    assert sorted((p["message_id"].decode(), p["consumer"]) for p in pending) == sorted(
        (d.receipt.entry_id, b"other") for d in taken
    )
