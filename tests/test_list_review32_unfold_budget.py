"""redis+list: the rescue's unfold of a lease group that claims far more receipts than
its consumer's earlier-version lease hash holds (``ab-0+10000000000000:old``) is
bounded a call (issue 18: no bookkeeping call takes more than 5 ms of server time).

Before, one call read the whole hash and wrote every lease that fell in the group as
a member of its own (9,999 leases: 11.3 ms in one call). Now a call writes at most the
rescue's lease budget of them, the latest, and the group shrinks to the receipts below
them; a hash too big to read in one call is not read (the group is walked, and a
consumer's maintenance makes a bounded number of rescue calls before its fetch, so the
fetch is never starved)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import pytest
import redis

from brokerkit.backends.redis.list import RedisListBroker, upkeep
from brokerkit.backends.redis.list.upkeep_calls import RESCUE_LEASES, RESCUE_LIMIT
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis_list

LOOKALIKE = b"an element an earlier version leased"
LIVE = 2**50
CLAIM = 10**13


def _unfold_read() -> int:
    found = re.search(r"UNFOLD_OVER, UNFOLD_READ = \d+, (\d+)", upkeep.RESCUE)
    assert found is not None
    return int(found.group(1))


@pytest.fixture
def connect(redis_broker: Callable[..., Any]) -> Callable[..., RedisListBroker]:
    return functools.partial(redis_broker, "redis+list")


def _old_leases(client: redis.Redis, broker: RedisListBroker, indexes: range, expired: int) -> None:
    """Leases an earlier version recorded for consumer 'old' (the short field form),
    all live but the one at ``expired``, and a group claiming 10^13 receipts."""
    keys = broker._topic("t").keys
    pipe = client.pipeline(transaction=False)
    for index in indexes:
        pipe.hset(keys.leases("old"), f"ab-{index}", LOOKALIKE + b"%d" % index)
        deadline = 1 if index == expired else LIVE
        pipe.hset(keys.expiry, f"ab-{index}:old", f"{deadline}.5")
    pipe.execute()
    client.zadd(keys.deadlines, {f"ab-0+{CLAIM}:old": 0})


def test_an_unfold_writes_at_most_the_budget_a_call(
    connect: Callable[..., RedisListBroker], redis_client: redis.Redis
) -> None:
    broker = connect(visibility_timeout=30)
    keys = broker._topic("t").keys
    held = 2 * RESCUE_LEASES + 50
    _old_leases(redis_client, broker, range(1, held + 1), expired=7)
    plan = broker._topic("t")
    broker._rescue(plan, "", None)
    # the latest RESCUE_LEASES, and the group below them: before, all of them
    members = redis_client.zrange(keys.deadlines, 0, -1)
    assert len(members) == RESCUE_LEASES + 1
    assert f"ab-0+{held + 1 - RESCUE_LEASES}:old".encode() in members
    for _ in range(20):
        *_, visited, _, _ = broker._rescue(plan, "", None)[:6]
        if visited < RESCUE_LIMIT:
            break
    else:
        raise AssertionError("the rescue never finished")
    # the live leases indexed by their deadline (the group below the unfolded ones,
    # claiming fewer than 4 times the leases held, walked in parts); the expired back
    assert redis_client.zrangebyscore(keys.deadlines, 0, LIVE - 1) == []
    assert redis_client.zcard(keys.deadlines) <= RESCUE_LEASES + 3
    assert redis_client.lrange(keys.queue, 0, -1) == [LOOKALIKE + b"7"]


def test_a_hash_too_big_to_read_in_a_call_is_not_read(redis_server: RedisServer) -> None:
    """One command count, not a duration: a group over a lease hash of more than
    UNFOLD_READ fields costs one HKEYS, the caller's, outside the script (before, the
    script read it whole; see tests/test_list_review33_big_old_hash.py for which)."""
    import brokerkit

    client = redis_server.client()
    with brokerkit.connect(redis_server.url("redis+list"), visibility_timeout=30) as broker:
        _old_leases(client, broker, range(1, _unfold_read() + 2), expired=-1)
        client.config_resetstat()
        broker._rescue(broker._topic("t"), "", None)
        assert client.info("commandstats")["cmdstat_hkeys"]["calls"] == 1
        # a hash of UNFOLD_READ is read (in the script), under the group alone again
        client.hdel(broker._topic("t").keys.leases("old"), "ab-1")
        client.delete(broker._topic("t").keys.deadlines)
        client.zadd(broker._topic("t").keys.deadlines, {f"ab-0+{CLAIM}:old": 0})
        client.config_resetstat()
        broker._rescue(broker._topic("t"), "", None)
        assert client.info("commandstats")["cmdstat_hkeys"]["calls"] == 1
    client.close()


@pytest.mark.timeout(120)
def test_a_group_walked_for_ever_does_not_starve_a_fetch(
    connect: Callable[..., RedisListBroker], redis_client: redis.Redis
) -> None:
    """A group the rescue walks for ever (10^13 receipts claimed, a hash too big to
    read) leaves every maintenance more to do; the fetch goes on after a bounded many."""
    broker = connect(visibility_timeout=30)
    _old_leases(redis_client, broker, range(1, _unfold_read() + 2), expired=-1)
    broker.publish("t", "fresh")
    with broker.subscribe("t") as subscription:
        delivery = subscription.receive(timeout=60)
        assert delivery is not None and delivery.body == "fresh"
        delivery.ack()
