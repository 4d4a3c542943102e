"""redis+list: a lease hash an earlier version recorded that holds more leases than a
script reads at once (``UNFOLD_READ``) is read by the caller, outside any script, and
handed to the rescue a part at a time.

Before, a lease group claiming 10^13 receipts of a consumer whose hash held more than
4,000 such leases was walked 100 receipts a call: ``rescue()`` never returned and the
expired lease in it never came back. And a dead consumer's hash was read whole inside
the script at every call (HKEYS; and HGETALL, bodies too, when the dead-letter key held
another type), however big: issue 18 wants every bookkeeping call bounded."""

from __future__ import annotations

import re
import threading

import pytest
import redis

import brokerkit
from brokerkit.backends.redis.list import RedisListBroker, upkeep
from brokerkit.backends.redis.list.upkeep_calls import RESCUE_LIMIT
from tests.redis_server import RedisServer
from tests.script_monitor import ScriptMonitor

pytestmark = pytest.mark.redis_list

LOOKALIKE = b"an element an earlier version leased"
LIVE = 2**50
CLAIM = 10**13


def _unfold_read() -> int:
    found = re.search(r"UNFOLD_OVER, UNFOLD_READ = \d+, (\d+)", upkeep.RESCUE)
    assert found is not None
    return int(found.group(1))


def _old_leases(
    client: redis.Redis, broker: RedisListBroker, consumer: str, count: int, expired: int
) -> None:
    """``count`` leases an earlier version recorded for ``consumer`` (indexes 1 to
    ``count``, the short field form and the whole receipt in turn), all live but the one
    at ``expired``."""
    keys = broker._topic("t").keys
    pipe = client.pipeline(transaction=False)
    for index in range(1, count + 1):
        receipt = f"ab-{index}:{consumer}"
        deadline = 1 if index == expired else LIVE
        if index % 2:
            pipe.hset(keys.leases(consumer), f"ab-{index}", LOOKALIKE + b"%d" % index)
            pipe.hset(keys.expiry, receipt, f"{deadline}.5")
        else:
            pipe.hset(keys.leases(consumer), receipt, b"5:" + LOOKALIKE + b"%d" % index)
            pipe.hset(keys.expiry, receipt, deadline)
    pipe.execute()


def _calls_until_done(broker: RedisListBroker, most: int) -> int:
    """What rescue calls hand back until one reports nothing more to do (at most ``most``)."""
    plan = broker._topic("t")
    total = 0
    for _ in range(most):
        moved, _, _, visited, *_ = broker._rescue(plan, "", None)
        total += int(moved)
        if visited < RESCUE_LIMIT:
            return total
    raise AssertionError("the rescue never finished: it reports more to do at every call")


def test_a_huge_group_over_a_big_hash_is_rescued_in_a_bounded_many_calls(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    with brokerkit.connect(redis_server.url("redis+list"), visibility_timeout=30) as broker:
        assert isinstance(broker, RedisListBroker)
        keys = broker._topic("t").keys
        _old_leases(client, broker, "old", _unfold_read() + 1, expired=7)
        client.zadd(keys.deadlines, {f"ab-0+{CLAIM}:old": 0})
        # before: 100 of the 10^13 receipts a call, more to do at every call
        assert _calls_until_done(broker, 200) == 1
        assert client.lrange(keys.queue, 0, -1) == [LOOKALIKE + b"7"]
        # every live lease is indexed by its own deadline: none due, none lost
        assert client.zrangebyscore(keys.deadlines, 0, LIVE - 1) == []
        assert broker.rescue("t") == 0
        assert client.hlen(keys.leases("old")) == _unfold_read()
    client.close()


def test_the_rescue_returns_for_a_huge_group_over_a_big_hash(redis_server: RedisServer) -> None:
    client = redis_server.client()
    with brokerkit.connect(redis_server.url("redis+list"), visibility_timeout=30) as broker:
        keys = broker._topic("t").keys  # type: ignore[attr-defined]
        _old_leases(client, broker, "old", _unfold_read() + 150, expired=_unfold_read() + 120)
        client.zadd(keys.deadlines, {f"ab-0+{CLAIM}:old": 0})
        done: list[int] = []
        worker = threading.Thread(target=lambda: done.append(broker.rescue("t")), daemon=True)
        worker.start()
        worker.join(timeout=60)
        assert done == [1], "rescue() did not return"
    client.close()


@pytest.mark.parametrize("dead_letter_key", ["list", "string"])
def test_a_dead_consumers_big_hash_is_never_read_whole_in_a_script(
    redis_server: RedisServer, dead_letter_key: str
) -> None:
    """Counted commands, not durations: no script lists or reads the whole hash of more
    than UNFOLD_READ leases (HKEYS, HGETALL); every lease still comes back."""
    client = redis_server.client()
    count = _unfold_read() + 250
    url = redis_server.url("redis+list")
    with brokerkit.connect(url, visibility_timeout=30, max_deliveries=5) as broker:
        assert isinstance(broker, RedisListBroker)
        keys = broker._topic("t").keys
        _old_leases(client, broker, "old", count, expired=-1)
        client.zadd(keys.consumers, {"old": 1})  # its heartbeat stopped long ago
        if dead_letter_key == "string":
            # the rescue first checks whether it would dead-letter (max_deliveries 1)
            client.set(keys.dead_letters, "another program's")
        with ScriptMonitor(client, arguments=1) as reads:
            broker._rescue(broker._topic("t"), "", None)
        whole = {(name, keys.leases("old")) for name in ("HKEYS", "HGETALL", "HVALS")}
        assert whole.isdisjoint(reads.commands)
        # (a hash of at most UNFOLD_READ is read in the script)
        if dead_letter_key == "list":
            assert _calls_until_done(broker, 200) == count - 100
            assert client.llen(keys.queue) == count
            assert client.exists(keys.leases("old")) == 0
            assert client.zscore(keys.consumers, "old") is None
        else:
            client.delete(keys.dead_letters)
    client.close()
