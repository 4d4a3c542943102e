"""redis+list: with the dead-letter key of another type, the rescue's check of whether
it would dead-letter is bounded also for a dead consumer whose processing list is not
empty: it spends a unit of its budget a batch (and a lease record) it looks at.

Before (6ce5187), the check spent nothing on such a consumer (the hand-back may pass it
over), so it read every one of its batches (LLEN and LRANGE each) in one call, however
many: 300 batches, 300 reads, where the hand-back reads at most RESCUE_LEASES."""

from __future__ import annotations

import pytest

import brokerkit
from brokerkit.backends.redis.list import RedisListBroker
from brokerkit.backends.redis.list.upkeep_calls import RESCUE_LEASES
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis_list

BATCHES = 3 * RESCUE_LEASES


def test_the_check_reads_a_budget_of_a_dead_consumers_batches(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    url = redis_server.url("redis+list")
    with brokerkit.connect(url, visibility_timeout=60, max_deliveries=10) as holder:
        assert isinstance(holder, RedisListBroker)
        keys = holder._topic("t").keys
        holder.publish_many("t", [b"m%d" % i for i in range(BATCHES)])
        subscription = holder.subscribe("t", prefetch=1, consumer="C")
        for _ in range(BATCHES):  # a fetch (a batch) each
            assert subscription.receive(timeout=5) is not None
        assert len(client.hkeys(keys.fetches("C"))) == BATCHES
        holder._suspend_renewals()  # its process dies
        client.zadd(keys.consumers, {"C": 1})
        client.rpush(keys.processing("C"), b"moved, never leased")
        client.set(keys.dead_letters, "another program's")
        client.config_resetstat()
        with brokerkit.connect(url, visibility_timeout=60, max_deliveries=10) as rescuer:
            assert isinstance(rescuer, RedisListBroker)
            rescuer._rescue(rescuer._topic("t"), "", None)
        stats = client.info("commandstats")
        client.delete(keys.dead_letters)
    reads = stats.get("cmdstat_lrange", {}).get("calls", 0)
    # the check's reads and the hand-back's, a budget each
    assert 0 < reads <= 2 * RESCUE_LEASES + 2, reads
