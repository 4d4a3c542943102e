"""redis+stream retention, replay, management and inspect against a real redis-server."""

from __future__ import annotations

import functools
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

import brokerkit
from brokerkit.backends.redis.stream import RedisStreamBroker
from tests.conftest import RedisTarget
from tests.redis_server import find_redis_cli

Make = Callable[..., RedisStreamBroker]


@pytest.fixture
def make(redis_broker: Callable[..., Any]) -> Make:
    """``make(**options)``: a new redis+stream broker under this test's prefix."""
    return functools.partial(redis_broker, "redis+stream")


# -- bounded memory --------------------------------------------------------------------


def test_approximate_maxlen_keeps_the_stream_near_the_cap_under_steady_load(
    make: Make, redis_client: redis.Redis
) -> None:
    broker = make(maxlen=200)
    key = broker.stream_key("metrics")
    node = int(redis_client.config_get("stream-node-max-entries")["stream-node-max-entries"])
    lengths = []
    for batch in range(30):
        broker.publish_many("metrics", [{"n": batch * 100 + i} for i in range(100)])
        broker.publish("metrics", "single")
        lengths.append(redis_client.xlen(key))
    assert max(lengths) <= 200 + node + 1, lengths
    assert min(lengths[2:]) >= 200


def test_exact_maxlen_keeps_exactly_the_cap(make: Make, redis_client: redis.Redis) -> None:
    broker = make(maxlen=50, trim_exact=True)
    for _ in range(5):
        broker.publish_many("metrics", range(30))
        assert redis_client.xlen(broker.stream_key("metrics")) <= 50
    assert redis_client.xlen(broker.stream_key("metrics")) == 50
    kept = [e.message.body for e in broker.read("metrics", count=100)]
    assert kept == list(range(10, 30)) + list(range(30))


def test_max_age_trims_entries_older_than_the_age(make: Make, redis_client: redis.Redis) -> None:
    broker = make(max_age=60, trim_exact=True)
    key = broker.stream_key("events")
    old_ms = int((time.time() - 3600) * 1000)
    for i in range(3):
        redis_client.xadd(key, {"body": f"old-{i}"}, id=f"{old_ms}-{i}")
    broker.publish("events", "new")
    assert [e.message.body for e in broker.read("events")] == ["new"]


def test_delete_acked_removes_an_entry_once_every_group_acked_it(
    make: Make, redis_client: redis.Redis
) -> None:
    broker = make(delete_acked=True)
    key = broker.stream_key("orders")
    work, audit = (
        broker.subscribe("orders", group="work"),
        broker.subscribe("orders", group="audit"),
    )
    broker.create_group("orders", "late")  # a group that has read nothing yet
    broker.publish_many("orders", ["a", "b"])
    for subscription in (work, audit):
        delivery = subscription.receive(timeout=1)
        assert delivery is not None
        delivery.ack()
    assert redis_client.xlen(key) == 2, "the 'late' group has not read them yet"
    broker.delete_group("orders", "late")
    first = work.receive(timeout=1)
    assert first is not None and first.body == "b"
    first.ack()
    assert redis_client.xlen(key) == 2, "'audit' has not acked 'b' yet"
    second = audit.receive(timeout=1)
    assert second is not None
    second.ack()
    assert redis_client.xlen(key) == 1, "'a' still there: acked by both before 'late' went"


def test_entries_trimmed_while_pending_are_reported_not_lost_silently(
    make: Make, redis_client: redis.Redis
) -> None:
    vt = 0.2
    broker = make(visibility_timeout=vt)
    broker.create_group("jobs", "g")
    broker.publish_many("jobs", range(5))
    key = broker.stream_key("jobs")
    redis_client.xreadgroup("g", "dead", {key: ">"}, count=5)  # a consumer that dies
    broker.publish("jobs", "kept")
    assert broker.trim("jobs", maxlen=1, exact=True) == 5
    info = broker.inspect("jobs")
    assert info.trimmed_pending == 5
    assert info.groups[0].trimmed_pending == 5
    subscription = broker.subscribe("jobs", group="g")
    delivery = subscription.receive(timeout=1)
    assert delivery is not None and delivery.body == "kept"
    delivery.ack()
    deadline = time.monotonic() + vt + 5
    while broker.inspect("jobs").lost_to_trimming < 5 and time.monotonic() < deadline:
        assert subscription.receive(timeout=0.2) is None
    info = broker.inspect("jobs")
    assert info.lost_to_trimming == 5
    assert info.in_flight == 0 and info.trimmed_pending == 0


# -- replay and log reads --------------------------------------------------------------


def test_a_new_group_starts_at_the_beginning_now_or_an_entry_id(make: Make) -> None:
    broker = make()
    broker.publish_many("orders", ["a", "b", "c"])
    middle = broker.read("orders")[1].position

    def bodies(subscription: brokerkit.Subscription) -> list[object]:
        got = []
        while (delivery := subscription.receive(timeout=0.3)) is not None:
            got.append(delivery.body)
            delivery.ack()
        return got

    earliest = broker.subscribe("orders", group="from-start", start="earliest")
    latest = broker.subscribe("orders", group="from-now", start="latest")
    after = broker.subscribe("orders", group="from-id", start=middle)
    broker.publish("orders", "d")
    assert bodies(earliest) == ["a", "b", "c", "d"]
    assert bodies(latest) == ["d"]
    assert bodies(after) == ["c", "d"]
    broker.set_group_position("orders", "from-now", "earliest")
    assert bodies(latest) == ["a", "b", "c", "d"]
    with pytest.raises(brokerkit.InvalidOption, match="start"):
        broker.subscribe("orders", group="bad", start="yesterday")


def test_read_gives_the_stream_as_a_log_without_a_group(make: Make) -> None:
    broker = make()
    ids = broker.publish_many("orders", range(5))
    page = broker.read("orders", count=3)
    assert [e.message.id for e in page] == ids[:3]
    rest = broker.read("orders", after=page[-1].position)
    assert [e.message.body for e in rest] == [3, 4]
    assert broker.read("orders", after=rest[-1].position) == []
    assert broker.inspect("orders").groups == ()
    assert [e.message.body for e in broker.tail("orders", timeout=0.2)] == [0, 1, 2, 3, 4]
    with pytest.raises(brokerkit.InvalidOption, match="after"):
        broker.read("orders", after="soon")


def test_tail_from_latest_sees_only_new_entries(make: Make) -> None:
    broker = make()
    broker.publish("orders", "old")
    entries = broker.tail("orders", after="latest", timeout=1)
    broker.publish("orders", "new")
    assert [e.message.body for e in entries] == ["new"]


# -- management ------------------------------------------------------------------------


def test_delete_entries_trim_and_purge(make: Make, redis_client: redis.Redis) -> None:
    broker = make()
    broker.publish_many("orders", range(10))
    positions = [e.position for e in broker.read("orders")]
    assert broker.delete_entries("orders", positions[0], positions[1], "1-0") == 2
    assert broker.trim("orders", maxlen=5, exact=True) == 3
    subscription = broker.subscribe("orders")
    held = subscription.receive(timeout=1)
    assert held is not None and held.body == 5
    assert broker.purge("orders") == 4, "the held entry stays for its consumer"
    assert subscription.receive(timeout=0.2) is None
    held.ack()
    with pytest.raises(brokerkit.InvalidOption):
        broker.trim("orders")


def test_remove_idle_consumers_keeps_those_holding_entries(make: Make) -> None:
    broker = make()
    broker.publish("jobs", "x")
    holder = broker.subscribe("jobs", group="g", consumer="holder")
    delivery = holder.receive(timeout=1)
    assert delivery is not None
    idle = broker.subscribe("jobs", group="g", consumer="idle")
    assert idle.receive(timeout=0.05) is None
    assert broker.remove_idle_consumers("jobs", "g", idle=0) == ["idle"]
    names = [c.name for c in broker.inspect("jobs").groups[0].consumers]
    assert names == ["holder"]
    delivery.ack()
    assert broker.delete_group("jobs", "g") is True
    assert broker.delete_group("jobs", "g") is False


def test_closing_a_subscription_that_holds_nothing_leaves_the_group(make: Make) -> None:
    broker = make()
    with broker.subscribe("jobs", group="g", consumer="short-lived") as subscription:
        assert subscription.receive(timeout=0.05) is None
    assert broker.inspect("jobs").groups[0].consumers == ()


# -- inspect ---------------------------------------------------------------------------


def _cli(target: RedisTarget, *args: str) -> list[str]:
    result = subprocess.run(
        [find_redis_cli(), "-h", target.host, "-p", str(target.port), "-n", str(target.db), *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout.splitlines()


def _after(lines: list[str], name: str) -> str:
    return lines[lines.index(name) + 1]


def _records(lines: list[str]) -> list[dict[str, str]]:
    """XINFO GROUPS / CONSUMERS as redis-cli prints them: flat name/value lines."""
    records: list[dict[str, str]] = []
    for i in range(0, len(lines) - 1, 2):
        if lines[i] == "name":
            records.append({})
        records[-1][lines[i]] = lines[i + 1]
    return records


def test_inspect_agrees_with_redis_cli_xinfo(make: Make, redis_target: RedisTarget) -> None:
    broker = make()
    broker.publish_many("orders", range(8))
    email = broker.subscribe("orders", group="email", consumer="e1", prefetch=3)
    billing = broker.subscribe("orders", group="billing", consumer="b1")
    assert email.receive(timeout=1) is not None
    settled = billing.receive(timeout=1)
    assert settled is not None
    settled.ack()
    info = broker.inspect("orders")
    key = broker.stream_key("orders")

    stream = _cli(redis_target, "XINFO", "STREAM", key)
    assert info.length == int(_after(stream, "length")) == 8
    assert info.first_id == _after(stream, "first-entry")
    assert info.last_id == _after(stream, "last-entry")
    assert info.last_generated_id == _after(stream, "last-generated-id")
    assert len(info.groups) == int(_after(stream, "groups")) == 2

    groups = {g["name"]: g for g in _records(_cli(redis_target, "XINFO", "GROUPS", key))}
    for group in info.groups:
        raw = groups[group.name]
        assert group.pending == int(raw["pending"])
        assert group.last_delivered_id == raw["last-delivered-id"]
        if "lag" in raw:
            assert group.lag == int(raw["lag"])
        consumers = _records(_cli(redis_target, "XINFO", "CONSUMERS", key, group.name))
        assert [(c.name, c.pending) for c in group.consumers] == [
            (c["name"], int(c["pending"])) for c in consumers
        ]
        for mine, theirs in zip(group.consumers, consumers, strict=True):
            assert mine.idle is not None
            assert abs(mine.idle - int(theirs["idle"]) / 1000) < 5
    by_name = {g.name: g for g in info.groups}
    assert (by_name["email"].pending, by_name["email"].lag) == (3, 5)
    assert (by_name["billing"].pending, by_name["billing"].lag) == (0, 7)
    assert info.in_flight == 3


def test_inspect_of_a_missing_topic_is_empty(make: Make) -> None:
    info = make().inspect("nothing-here")
    assert (info.length, info.in_flight, info.groups, info.first_id) == (0, 0, (), None)
