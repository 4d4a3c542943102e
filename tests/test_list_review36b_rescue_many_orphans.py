"""redis+list: a dead consumer of an earlier version whose processing list holds more
than about 8,000 orphans (elements no lease record holds) beside a lease hash too big
for a script to match (more than 100 records) is rescued, in calls of at most
RESCUE_LEASES of its orphans each.

Before, the caller gave a call the indexes of every orphan it matched, and RESCUE
unpacked its arguments whole (``{unpack(ARGV, ...)}``): past about 8,000 (Lua's
LUAI_MAXCSTACK) every call failed with "too many results to unpack", so every rescue,
and every consumer's maintenance before its fetch, failed. Counted commands (MONITOR),
never durations."""

from __future__ import annotations

from collections import Counter

import pytest

import brokerkit
from brokerkit.backends.redis.list import RedisListBroker
from brokerkit.backends.redis.list.upkeep_calls import RESCUE_LEASES
from tests.redis_server import RedisServer
from tests.script_monitor import ScriptMonitor
from tests.test_list_review33_inspect_orphans import LEASES, _earlier_version

pytestmark = pytest.mark.redis_list

ORPHANS = 9_000


def test_a_dead_consumers_thousands_of_orphans_go_back_in_bounded_calls(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    with brokerkit.connect(redis_server.url("redis+list"), visibility_timeout=30) as broker:
        assert isinstance(broker, RedisListBroker)
        keys = broker._topic("t").keys
        orphans = _earlier_version(client, broker, "old")
        more = [b"orphan %d" % i for i in range(ORPHANS)]
        for i in range(0, ORPHANS, 1000):
            client.rpush(keys.processing("old"), *more[i : i + 1000])
        client.zadd(keys.consumers, {"old": 1})  # its heartbeat stopped long ago
        with ScriptMonitor(client, arguments=1) as seen:
            handed = broker.rescue("t")  # before: ResponseError, too many results to unpack
        # every lease once, every orphan once, in the list's order
        expected = Counter([b"leased %d" % i for i in range(LEASES)] + orphans + more)
        queue = client.lrange(keys.queue, 0, -1)
        assert Counter(queue) == expected
        assert handed >= LEASES
        assert [e for e in queue if e.startswith(b"orphan ")] == more
        assert client.exists(keys.processing("old"), keys.leases("old")) == 0
        assert client.zscore(keys.consumers, "old") is None
        # no call hands back more than RESCUE_LEASES orphans (and a budget of leases)
        pushed = [sum(1 for c in call if c == ("RPUSH", keys.queue)) for call in seen.calls]
        assert max(pushed) <= 2 * RESCUE_LEASES  # measured 102 (before the cap: 9,002)
        assert len(seen.calls) >= ORPHANS // RESCUE_LEASES
    client.close()


def test_a_live_consumers_orphans_beyond_a_call_go_back_in_parts(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    with brokerkit.connect(redis_server.url("redis+list"), visibility_timeout=30) as broker:
        assert isinstance(broker, RedisListBroker)
        keys = broker._topic("t").keys
        orphans = _earlier_version(client, broker, "me")
        more = [b"orphan %d" % i for i in range(ORPHANS)]
        for i in range(0, ORPHANS, 1000):
            client.rpush(keys.processing("me"), *more[i : i + 1000])
        client.zadd(keys.consumers, {"me": 2**50})
        reply = broker._rescue(broker._topic("t"), "me", None)  # before: ResponseError
        assert reply[2] == RESCUE_LEASES  # orphans handed back: a call's part
        assert reply[1] == 0  # and more to do at once
        assert client.llen(keys.queue) == RESCUE_LEASES
        assert client.llen(keys.processing("me")) == LEASES + len(orphans) + ORPHANS - RESCUE_LEASES
    client.close()
