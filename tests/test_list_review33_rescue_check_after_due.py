"""redis+list: with the dead-letter key of another type, the rescue's check of whether
it would dead-letter looks at every delivery the call goes on to hand back, also when a
due lease group hands back a batch's last leased delivery first (the batch goes, and the
call reaches the dead consumer's next batch with the budget the check spent on it).

Before (1a047e3), the check counted that batch's whole length against its budget and
never looked at the next batch; the call then cut that batch's delivery off (its 2nd
delivery, at max_deliveries=2), failed on the dead-letter key with a raw WRONGTYPE after
its writes, and the message was gone."""

from __future__ import annotations

import pytest
import redis

import brokerkit
from brokerkit.backends.redis.list import RedisListBroker
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis_list

N = 100  # RESCUE_LEASES: the first batch alone spends the check's budget


def _messages(client: redis.Redis, queue: str, batches_prefix: str) -> int:
    """Messages left: in the queue, and the batches' elements not blanked (settled)."""
    held = sum(1 for k in client.keys(batches_prefix + "*") for e in client.lrange(k, 0, -1) if e)
    return int(client.llen(queue)) + held


def test_a_batch_a_due_group_empties_does_not_hide_the_next_one_from_the_check(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    # hashes in insertion order (a listpack, not a hash table: 100 flags make a value
    # of 100 bytes), so the first batch is listed before the second, hiding it
    client.config_set("hash-max-ziplist-value", 1024)
    url = redis_server.url("redis+list")
    with brokerkit.connect(url, visibility_timeout=30, max_deliveries=2) as holder:
        assert isinstance(holder, RedisListBroker)
        keys = holder._topic("t").keys
        holder.publish_many("t", [b"f%d" % i for i in range(N)])
        subscription = holder.subscribe("t", prefetch=N, consumer="C")
        first = [subscription.receive(timeout=5) for _ in range(N)]
        assert all(d is not None and d.body.startswith(b"f") for d in first)
        holder.publish("t", b"second")
        with brokerkit.connect(url, visibility_timeout=30, max_deliveries=2) as other:
            once = other.subscribe("t", prefetch=1, consumer="X")
            taken = once.receive(timeout=5)
            assert taken is not None and taken.body == b"second"
            taken.nack()  # back at the head, delivered once
            once.close()
        extended = first[0]
        assert extended is not None
        extended.extend(30)  # a lease group of its own
        for d in first[1:]:
            assert d is not None
            d.ack()
        again = subscription.receive(timeout=5)  # a second batch: its 2nd delivery
        assert again is not None and again.body == b"second"
        holder._suspend_renewals()  # a hung consumer: its heartbeat stops
        client.zadd(keys.consumers, {"C": 1})
        receipt = str(extended.receipt)
        assert client.hexists(keys.expiry, receipt)
        client.hset(keys.expiry, receipt, "1.0")  # the extension ran out
        client.zadd(keys.deadlines, {receipt: 1})
        assert len(client.hkeys(keys.fetches("C"))) == 2
        assert client.object("encoding", keys.fetches("C")) in (b"ziplist", b"listpack")
        client.set(keys.dead_letters, "another program's")
        before = _messages(client, keys.queue, keys.batches_prefix)
        assert before == 2
        with brokerkit.connect(url, visibility_timeout=30, max_deliveries=2) as rescuer:
            assert isinstance(rescuer, RedisListBroker)
            with pytest.raises(Exception, match="not a list; nothing was changed"):
                rescuer._rescue(rescuer._topic("t"), "", None)
        assert _messages(client, keys.queue, keys.batches_prefix) == before
        client.delete(keys.dead_letters)
        with brokerkit.connect(url, visibility_timeout=30, max_deliveries=2) as rescuer:
            rescuer._rescue(rescuer._topic("t"), "", None)  # now it may dead-letter
        assert client.lrange(keys.dead_letters, 0, -1) != []
        subscription.close()
        client.delete(keys.dead_letters)
    client.close()
