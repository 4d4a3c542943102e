"""redis+stream against hostile input and unfriendly neighbours: entries other
programs wrote that do not decode, group members with different visibility
timeouts, connection loss while settling, lease extension and renewal."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

import brokerkit
from brokerkit.backends.redis.stream import RedisStreamBroker
from tests.redis_server import RedisServer

Make = Callable[..., RedisStreamBroker]

#: Slack on top of a visibility timeout for a recovery to be seen (slow CI machines).
GRACE = 5.0


@pytest.fixture
def make(redis_broker: Callable[..., Any]) -> Make:
    """``make(**options)``: a new redis+stream broker under this test's prefix."""
    return functools.partial(redis_broker, "redis+stream")


#: Entries in the old one-field-per-fact layout whose facts do not parse.
POISON = [
    {"id": "x", "ct": "text/plain", "ts": "abc", "body": "z"},
    {"id": "x", "ct": "text/plain", "ts": "1", "h": "{not json", "body": "z"},
    {"id": b"\xff\xfe", "ct": "text/plain", "body": "z"},
]


@pytest.mark.parametrize("fields", POISON, ids=["bad-ts", "bad-headers", "bad-id"])
def test_an_undecodable_entry_is_delivered_raw_and_never_jams_the_group(
    make: Make, redis_client: redis.Redis, fields: dict[str, Any]
) -> None:
    broker = make(max_deliveries=2)
    redis_client.xadd(broker.stream_key("s"), fields)
    good = broker.publish("s", "good")
    got = list(broker.consume("s", timeout=0.5, prefetch=10))
    assert [d.id for d in got][1:] == [good]
    poison = got[0]
    assert poison.id.startswith("raw-")
    assert poison.content_type == "application/json"
    assert isinstance(poison.body, dict) and set(poison.body) == {k for k in fields}
    broker.ack(*got)
    assert broker.inspect("s").in_flight == 0


def test_a_poison_entry_past_max_deliveries_is_dead_lettered_before_decoding(
    make: Make, redis_client: redis.Redis
) -> None:
    vt = 0.3
    broker = make(max_deliveries=2, visibility_timeout=vt)
    key = broker.stream_key("s")
    broker.create_group("s", "default")
    entry = redis_client.xadd(key, POISON[0])
    # A consumer that takes the entry and dies, twice: two deliveries, no ack.
    redis_client.xreadgroup("default", "dead", {key: ">"})
    redis_client.xclaim(key, "default", "dead", 0, [entry], retrycount=2)
    good = broker.publish("s", "good")
    subscription = broker.subscribe("s")
    deadline = time.monotonic() + vt + GRACE
    got = []
    while time.monotonic() < deadline and (d := subscription.receive(timeout=0.5)) is not None:
        got.append(d)
        d.ack()
    assert [d.id for d in got] == [good]
    dead = broker.subscribe(broker.dead_letter_topic("s")).receive(timeout=vt + GRACE)
    assert dead is not None
    assert dead.headers["x-dead-letter-reason"] == "max_deliveries"
    dead.ack()
    assert broker.inspect("s").in_flight == 0


def test_the_reaper_outlives_a_failing_round(make: Make, caplog: pytest.LogCaptureFixture) -> None:
    vt = 0.2
    broker = make(max_deliveries=1, visibility_timeout=vt)
    broker.subscribe("s")
    rounds: list[int] = []
    real = broker._reap_all

    def flaky() -> None:
        rounds.append(1)
        if len(rounds) == 1:
            raise ValueError("a bug in one round")
        real()

    broker._reaper._work = flaky
    deadline = time.monotonic() + GRACE
    while len(rounds) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # polling with a deadline, not synchronisation
    assert len(rounds) >= 2, "the reaper thread died on an unexpected error"


def test_a_renewal_racing_an_ack_reports_no_lost_lease(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    broker = make()
    broker.publish("s", "x")
    delivery = broker.subscribe("s").receive(timeout=1)
    assert delivery is not None
    ack = broker._scripts.ack

    def ack_then_heartbeat(*args: Any, **kwargs: Any) -> Any:
        reply = ack(*args, **kwargs)
        # A heartbeat landing right after the XACK, before the ack call returns.
        broker._renew_held(broker._keeper.held())
        return reply

    broker._scripts.ack = ack_then_heartbeat  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING, logger="brokerkit.redis"):
        delivery.ack()
    assert not [r for r in caplog.records if "lost" in r.getMessage()]


def test_a_member_with_a_short_visibility_timeout_never_takes_a_longer_lease(
    make: Make,
) -> None:
    vt = 0.3
    fast = make(visibility_timeout=vt)  # joins first: the group's lease is raised after
    slow = make(visibility_timeout=30)
    quick = fast.subscribe("jobs", group="w")
    holder = slow.subscribe("jobs", group="w")
    slow.publish("jobs", "long job")
    delivery = holder.receive(timeout=1)
    assert delivery is not None
    deadline = time.monotonic() + 4 * vt
    while time.monotonic() < deadline:
        stolen = quick.receive(timeout=vt)
        assert stolen is None, "a live delivery of a longer lease was claimed"
    delivery.ack()


def test_an_ack_during_a_short_outage_succeeds(prefix: str) -> None:
    with RedisServer(appendonly=True) as server:
        url = server.url("redis+stream") + f"?prefix={prefix}&reconnect_timeout=20"
        with brokerkit.connect(url) as broker:
            broker.publish("s", "x")
            delivery = broker.subscribe("s").receive(timeout=1)
            assert delivery is not None
            server.kill()
            # The server is back after longer than redis-py's own few quick retries.
            restart = threading.Timer(1.5, server.restart)
            restart.start()
            try:
                delivery.ack()
            finally:
                restart.join()
            assert broker.inspect("s").in_flight == 0


def test_extend_counts_from_the_groups_lease_length(make: Make, redis_client: redis.Redis) -> None:
    fast = make(visibility_timeout=1)
    make(visibility_timeout=30).subscribe("jobs", group="w")  # the group's lease: 30 s
    fast.publish("jobs", "x")
    delivery = fast.subscribe("jobs", group="w").receive(timeout=1)
    assert delivery is not None
    delivery.extend(seconds=1)
    # Claims wait for an idle time of 30 s: a lease of 1 s from now is 29 s idle.
    [pending] = redis_client.xpending_range(fast.stream_key("jobs"), "w", "-", "+", 1)
    assert pending["time_since_delivered"] >= 29_000
    delivery.ack()


class _DiedBeforeDeadLettering(Exception):
    """A consumer's process ends between its claim of an entry and the dead letter."""


def test_a_dead_letter_counts_the_deliveries_made_not_a_claim_that_died_before_it(
    make: Make,
) -> None:
    vt = 0.3
    first = make(max_deliveries=1, visibility_timeout=vt)
    first.publish("s", "poison")
    held = first.subscribe("s").receive(timeout=vt + GRACE)
    assert held is not None  # the one allowed delivery; its consumer then dies
    first.close()
    dying = make(max_deliveries=1, visibility_timeout=vt)

    def die(*args: Any) -> None:
        raise _DiedBeforeDeadLettering

    dying._dead_letter_claimed = die  # type: ignore[method-assign]
    dying._reaper._work = lambda: None  # its fetch, not its reaper, claims the entry
    mourning = dying.subscribe("s")
    # The entry idles past the lease; this consumer claims it, past the limit.
    with pytest.raises(_DiedBeforeDeadLettering):
        mourning.receive(timeout=vt + GRACE)
    survivor = make(max_deliveries=1, visibility_timeout=vt)
    dead_letters = survivor.subscribe(survivor.dead_letter_topic("s"))
    reaped = survivor.subscribe("s")  # its reaper takes the entry the dying claim left
    dead = dead_letters.receive(timeout=vt + GRACE)
    assert dead is not None and dead.id == held.id
    # The claim that died before dead-lettering delivered nothing: one delivery.
    assert dead.headers["x-deliveries"] == "1"
    dead.ack()
    reaped.close()
