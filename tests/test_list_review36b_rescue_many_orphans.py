"""redis+list: a dead consumer of an earlier version whose processing list holds more
than about 8,000 orphans (elements no lease record holds) beside a lease hash too big
for a script to match (more than 100 records) is rescued.

Before, the caller gave a call the indexes of every orphan it matched, and RESCUE
unpacked its arguments whole (``{unpack(ARGV, ...)}``): past about 8,000 (Lua's
LUAI_MAXCSTACK) every call failed with "too many results to unpack", so every rescue,
and every consumer's maintenance before its fetch, failed. The script now reads its
arguments one at a time. (Such orphans still go back in one call, as a small lease
hash's always did: a known limit of this earlier version's data, docs/backends/redis-list.md.)"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

import brokerkit
from brokerkit.backends.redis.list import RedisListBroker
from tests.redis_server import RedisServer
from tests.test_list_review33_inspect_orphans import LEASES, _earlier_version

pytestmark = pytest.mark.redis_list

ORPHANS = 9_000


def _many_orphans(
    client: Any, broker: RedisListBroker, consumer: str
) -> tuple[list[bytes], list[bytes]]:
    """``consumer``'s bookkeeping as an earlier version left it (LEASES records, its
    orphans) and ORPHANS more elements no record holds, after them in its list: the
    earlier version's orphans and the ORPHANS more."""
    orphans = _earlier_version(client, broker, consumer)
    more = [b"orphan %d" % i for i in range(ORPHANS)]
    for i in range(0, ORPHANS, 1000):
        client.rpush(broker._topic("t").keys.processing(consumer), *more[i : i + 1000])
    return orphans, more


def test_a_dead_consumers_thousands_of_orphans_go_back(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    with brokerkit.connect(redis_server.url("redis+list"), visibility_timeout=30) as broker:
        assert isinstance(broker, RedisListBroker)
        keys = broker._topic("t").keys
        orphans, more = _many_orphans(client, broker, "old")
        client.zadd(keys.consumers, {"old": 1})  # its heartbeat stopped long ago
        handed = broker.rescue("t")  # before: ResponseError, too many results to unpack
        # every lease once, every orphan once, in the list's order
        expected = Counter([b"leased %d" % i for i in range(LEASES)] + orphans + more)
        queue = client.lrange(keys.queue, 0, -1)
        assert Counter(queue) == expected
        assert handed >= LEASES
        assert [e for e in queue if e.startswith(b"orphan ")] == more
        assert client.exists(keys.processing("old"), keys.leases("old")) == 0
        assert client.zscore(keys.consumers, "old") is None
    client.close()


def test_a_live_consumers_thousands_of_orphans_go_back(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    with brokerkit.connect(redis_server.url("redis+list"), visibility_timeout=30) as broker:
        assert isinstance(broker, RedisListBroker)
        keys = broker._topic("t").keys
        orphans, more = _many_orphans(client, broker, "me")
        client.zadd(keys.consumers, {"me": 2**50})
        reply = broker._rescue(broker._topic("t"), "me", None)  # before: ResponseError
        assert reply[2] == len(orphans) + ORPHANS  # every orphan handed back
        queue = client.lrange(keys.queue, 0, -1)
        assert Counter(queue) == Counter(orphans + more)
        assert client.llen(keys.processing("me")) == LEASES  # the leased ones stay
    client.close()
