"""redis+list: with the dead-letter key of another type, the rescue's check of whether
it would dead-letter reads no more of a dead consumer's batches than the call hands
back (the last RESCUE_LEASES elements), not each batch whole.

Before, it read every element of every batch of the dead consumer (LRANGE 0 -1, each
body copied into Lua): with 10,000 deliveries held, one call read them all, against
issue 18's bound on a bookkeeping call."""

from __future__ import annotations

import pytest

import brokerkit
from brokerkit.backends.redis.list import RedisListBroker
from brokerkit.backends.redis.list.upkeep_calls import RESCUE_LEASES
from tests.redis_server import RedisServer
from tests.script_monitor import ScriptMonitor

pytestmark = pytest.mark.redis_list

HELD = 5 * RESCUE_LEASES


def test_the_dead_letter_check_reads_no_more_than_the_call_hands_back(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    url = redis_server.url("redis+list")
    with brokerkit.connect(url, visibility_timeout=30, max_deliveries=5) as holder:
        assert isinstance(holder, RedisListBroker)
        keys = holder._topic("t").keys
        holder.publish_many("t", [b"m%d" % i for i in range(HELD)])
        subscription = holder.subscribe("t", prefetch=HELD)
        assert subscription.receive(timeout=5) is not None
        holder._suspend_renewals()  # a hung consumer: its heartbeat stops
        (consumer,) = client.zrange(keys.consumers, 0, -1)
        client.zadd(keys.consumers, {consumer: 1})
        sizes = {k.decode(): client.llen(k) for k in client.keys(keys.batches_prefix + "*")}
        assert sum(sizes.values()) == HELD
        client.set(keys.dead_letters, "another program's")
        with brokerkit.connect(url, visibility_timeout=30, max_deliveries=5) as rescuer:
            assert isinstance(rescuer, RedisListBroker)
            with ScriptMonitor(client) as reads:
                rescuer._rescue(rescuer._topic("t"), "", None)
        read = 0
        for command in reads.commands:
            name, key, *span = (*command, "")
            if name == "LRANGE" and key in sizes:
                start, stop = int(span[0]), int(span[1])
                assert stop == -1
                read += sizes[key] - start if start >= 0 else -start
        assert 0 < read <= 2 * RESCUE_LEASES  # the check's and the hand-back's
        client.delete(keys.dead_letters)
    client.close()
