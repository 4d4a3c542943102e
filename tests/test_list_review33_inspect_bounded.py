"""redis+list: ``inspect()`` (the INSPECT script: also every Prometheus scrape and
``brokerkit inspect``) is bounded a call however many deliveries are held, and its
numbers stay exact on a topic nothing else touches meanwhile. (Across its calls they
are no snapshot of a busy topic: a batch counted in flight by an early call and nacked
before the last call reads the queue's length is counted twice; one fetched after the
fields were listed, before that length, is in neither.)

Before, one INSPECT call read the whole ``expiry`` hash (HGETALL) and ran one HEXISTS
a field: 10,000 deliveries each extended by hand (a value of its own, in ``expiry``
under its receipt) took 53 ms of server time in one call, and 10,000 batches of one
delivery as many commands (issue 18 wants every bookkeeping call under 5 ms with
10,000 deliveries held). Counted commands (MONITOR), not durations."""

from __future__ import annotations

from typing import Any

import pytest
import redis

import brokerkit
from brokerkit.backends.redis.list import RedisListBroker, upkeep_calls
from brokerkit.backends.redis.list.plan import batch_runs
from tests.redis_server import RedisServer
from tests.script_monitor import ScriptMonitor

pytestmark = pytest.mark.redis_list

HELD = 10_000
#: The names an INSPECT call looks at (500 when the module had no such bound).
INSPECT_LEASES: int = getattr(upkeep_calls, "INSPECT_LEASES", 500)
#: The commands an INSPECT call may run: two for each name it is given, and a few
#: more for the topic as a whole and each consumer it lists.
MOST = 2 * INSPECT_LEASES + 40


def _fetch(broker: RedisListBroker, consumer: str, nonce: str, count: int) -> list[str]:
    """``count`` deliveries leased to ``consumer`` by one fetch (batch ``nonce``)."""
    plan = broker._topic("t")
    fetch = broker._scripts["FETCH"]
    keys = [*plan.keys_for([consumer]), plan.keys.batch(nonce, consumer)]
    args = [*plan.common, consumer, count, 60_000, nonce, 0]
    assert fetch(keys=keys, args=args)[0] == count
    return [f"{nonce}{i}:{consumer}" for i in range(count)]


def _extend(broker: RedisListBroker, receipts: list[str]) -> None:
    """A value of its own for each of ``receipts`` (extended by hand)."""
    plan = broker._topic("t")
    extend = broker._scripts["EXTEND"]
    keys = plan.keys_for({r.partition(":")[2] for r in receipts}, receipts)
    assert extend(keys=keys, args=[*plan.common, 600_000, "set", *batch_runs(receipts)]) == []


def _checked(client: redis.Redis, broker: RedisListBroker) -> Any:
    """inspect("t"), every script call it made bounded, none reading ``expiry`` whole."""
    expiry = broker._topic("t").keys.expiry
    with ScriptMonitor(client, arguments=1) as seen:
        info = broker.inspect("t")
    assert seen.calls
    for call in seen.calls:
        assert len(call) <= MOST, f"one INSPECT call ran {len(call)} commands"
        whole = {(name, expiry) for name in ("HGETALL", "HKEYS", "HVALS")}
        assert whole.isdisjoint(call)
    return info


def test_inspect_of_10000_deliveries_extended_by_hand_is_bounded_and_exact(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    with brokerkit.connect(redis_server.url("redis+list"), visibility_timeout=60) as broker:
        assert isinstance(broker, RedisListBroker)
        keys = broker._topic("t").keys
        client.lpush(keys.queue, *[b"m%d" % i for i in range(HELD + 3)])
        receipts = _fetch(broker, "c1", "n0-", HELD)
        _extend(broker, receipts[:-1])  # every one but the last: values of their own
        assert client.hlen(keys.expiry) == HELD  # the batch's value and 9,999 receipts'
        client.zadd(keys.consumers, {"c1": 2**50})
        info = _checked(client, broker)
        assert info.in_flight == HELD
        assert info.length == 3
        (group,) = info.groups
        assert [(c.name, c.pending) for c in group.consumers] == [("c1", HELD)]
        assert info.oldest_in_flight_age is not None and info.oldest_in_flight_age < 3600
    client.close()


def test_inspect_of_many_batches_counts_every_one_in_bounded_calls(
    redis_server: RedisServer,
) -> None:
    """More batches than one call looks at: each consumer's deliveries summed over the
    calls, a consumer that is not registered (it unsubscribed, its deliveries still
    leased) listed all the same, and an earlier version's lease counted once."""
    client = redis_server.client()
    batches = 2 * INSPECT_LEASES + 7
    with brokerkit.connect(redis_server.url("redis+list"), visibility_timeout=60) as broker:
        assert isinstance(broker, RedisListBroker)
        keys = broker._topic("t").keys
        client.lpush(keys.queue, *[b"m%d" % i for i in range(batches + 3)])
        gone = _fetch(broker, "gone", "g0-", 3)
        _extend(broker, gone[:1])
        for n in range(batches):
            _fetch(broker, "c1", f"n{n}-", 1)
        client.hset(keys.leases("c2"), "old-1", b"an earlier version's")
        client.hset(keys.expiry, "old-1:c2", f"{2**50}.{1000}")
        client.zrem(keys.consumers, "gone")  # (the fetch registered it)
        client.zadd(keys.consumers, {"c1": 2**50, "c2": 2**50})
        info = _checked(client, broker)
        assert info.in_flight == batches + 3 + 1
        (group,) = info.groups
        pending = {c.name: c.pending for c in group.consumers}
        assert pending == {"c1": batches, "c2": 1, "gone": 3}
        # the registered ones first, by heartbeat deadline
        assert [(c.name, c.idle is None) for c in group.consumers] == [
            ("c1", False),
            ("c2", False),
            ("gone", True),
        ]
        # the earlier version's lease, delivered at server ms 1000, is the oldest
        assert info.oldest_in_flight_age is not None and info.oldest_in_flight_age > 10**6
    client.close()


def test_inspect_sums_its_calls_and_lists_each_consumer_an_earlier_call_counted(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three names a call: the last call holds at most three, so of five consumers that
    are not registered, each named by one batch, at least two were counted only by an
    earlier call; each is listed, once, with its deliveries, and the oldest is the
    oldest of all calls."""
    monkeypatch.setattr(upkeep_calls, "INSPECT_LEASES", 3, raising=False)  # (before: none)
    client = redis_server.client()
    with brokerkit.connect(redis_server.url("redis+list"), visibility_timeout=60) as broker:
        assert isinstance(broker, RedisListBroker)
        keys = broker._topic("t").keys
        client.lpush(keys.queue, *[b"m%d" % i for i in range(30)])
        gone = [f"gone{k}" for k in range(5)]
        for k, consumer in enumerate(gone):
            _extend(broker, _fetch(broker, consumer, f"g{k}-", 3)[1:])
        _fetch(broker, "c1", "n0-", 2)
        _fetch(broker, "c1", "n1-", 1)
        client.zrem(keys.consumers, *gone)
        client.zadd(keys.consumers, {"c1": 2**50})
        client.hset(keys.leases("old"), "old-1:old", b"1000:an earlier version's")
        client.hset(keys.expiry, "old-1:old", 2**50)  # its deadline alone
        with ScriptMonitor(client, arguments=1) as seen:
            info = broker.inspect("t")
        assert len(seen.calls) == 3  # 5 + 2 + 1 names, 3 a call
        assert info.in_flight == 5 * 3 + 3 + 1
        (group,) = info.groups
        pending = [(c.name, c.pending) for c in group.consumers]
        assert pending[0] == ("c1", 3)
        assert sorted(pending[1:]) == [*[(c, 3) for c in gone], ("old", 1)]
        assert info.oldest_in_flight_age is not None and info.oldest_in_flight_age > 10**6
    client.close()
