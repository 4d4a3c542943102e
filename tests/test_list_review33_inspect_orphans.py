"""redis+list: the rescue's look for orphans (what sits in a consumer's processing list
without a lease: a lost reply, a consumer that died) reads no lease hash whole in a
script beside a list that is not empty.

Before, ``orphans`` in the preamble read the whole lease hash (HGETALL, every body copied
into Lua, and an HMGET of their expiry values) whenever the list held anything: a dead
consumer of an earlier version (it kept its leased elements in that list too) holding
10,000 leases had them all read by one call, and a live one at every maintenance. Now a
hash of more than 100 leases is matched by the caller, outside any script, and the call
after takes the orphans while the list and the hash are as the caller read them. Counted
commands (MONITOR), not durations."""

from __future__ import annotations

from collections import Counter

import pytest
import redis

import brokerkit
from brokerkit.backends.redis.list import RedisListBroker
from tests.redis_server import RedisServer
from tests.script_monitor import ScriptMonitor

pytestmark = pytest.mark.redis_list

LEASES = 150  # more than a script matches itself (100)
LIVE = 2**50


def _earlier_version(client: redis.Redis, broker: RedisListBroker, consumer: str) -> list[bytes]:
    """LEASES live leases an earlier version recorded for ``consumer`` (both field
    forms), their elements in its processing list too, as that version kept them, and
    two orphans there: one of its own, one a copy of a leased element. Returns the
    orphans."""
    keys = broker._topic("t").keys
    pipe = client.pipeline(transaction=False)
    for index in range(LEASES):
        element = b"leased %d" % index
        if index % 2:
            pipe.hset(keys.leases(consumer), f"ab-{index}", element)
            pipe.hset(keys.expiry, f"ab-{index}:{consumer}", f"{LIVE}.5")
        else:
            field = f"ab-{index}:{consumer}"
            pipe.hset(keys.leases(consumer), field, b"5:" + element)
            pipe.hset(keys.expiry, field, LIVE)
        pipe.rpush(keys.processing(consumer), element)
    pipe.execute()
    orphans = [b"never leased", b"leased 7"]
    client.lpush(keys.processing(consumer), orphans[0])
    client.rpush(keys.processing(consumer), orphans[1])
    return orphans


def _no_whole_hash(reads: ScriptMonitor, leases: str) -> None:
    """No script read every body of the hash (its names, a rescue lists)."""
    whole = {(name, leases) for name in ("HGETALL", "HVALS")}
    assert whole.isdisjoint(reads.commands)


def test_a_dead_consumers_orphans_beside_a_big_hash_are_matched_outside_the_script(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    with brokerkit.connect(redis_server.url("redis+list"), visibility_timeout=30) as broker:
        assert isinstance(broker, RedisListBroker)
        keys = broker._topic("t").keys
        orphans = _earlier_version(client, broker, "old")
        client.zadd(keys.consumers, {"old": 1})  # its heartbeat stopped long ago
        with ScriptMonitor(client, arguments=1) as reads:
            broker.rescue("t")
        _no_whole_hash(reads, keys.leases("old"))
        # every lease once, and the two orphans: nothing lost, nothing twice
        expected = Counter([b"leased %d" % i for i in range(LEASES)] + orphans)
        assert Counter(client.lrange(keys.queue, 0, -1)) == expected
        assert client.exists(keys.processing("old"), keys.leases("old")) == 0
        assert client.zscore(keys.consumers, "old") is None
    client.close()


def test_a_live_consumers_orphans_beside_a_big_hash_are_matched_outside_the_script(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    with brokerkit.connect(redis_server.url("redis+list"), visibility_timeout=30) as broker:
        assert isinstance(broker, RedisListBroker)
        keys = broker._topic("t").keys
        orphans = _earlier_version(client, broker, "me")
        client.zadd(keys.consumers, {"me": LIVE})
        with ScriptMonitor(client, arguments=1) as reads:
            reply = broker._rescue(broker._topic("t"), "me", None)
        _no_whole_hash(reads, keys.leases("me"))
        assert reply[2] == 2  # orphans handed back
        assert sorted(client.lrange(keys.queue, 0, -1)) == sorted(orphans)
        # the leased copies stay, as that version keeps them
        assert Counter(client.lrange(keys.processing("me"), 0, -1)) == Counter(
            [b"leased %d" % i for i in range(LEASES)]
        )
        assert client.hlen(keys.leases("me")) == LEASES
    client.close()


@pytest.mark.parametrize(
    ("field", "value", "element"),
    [
        (b"ab-1", b"5:x", b"5:x"),  # the short field: the value is the element
        (b"ab-1:c", b"5:x", b"x"),
        (b"ab-1:c", b" 0x1f :x", b"x"),  # as Lua's tonumber reads a time
        (b"ab-1:c", b"1e3:x:y", b"x:y"),
        (b"ab-1:c", b"five:x", b"five:x"),  # no time: all element, as the script reads it
        (b"ab-1:c", b"x", b"x"),
    ],
)
def test_a_lease_records_element_reads_as_the_scripts_read_it(
    field: bytes, value: bytes, element: bytes
) -> None:
    from brokerkit.backends.redis.list.upkeep_calls import record_element  # (new)

    assert record_element(field, value) == element
