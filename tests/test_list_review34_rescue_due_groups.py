"""redis+list: the deliveries of a consumer fed one message a fetch (prefetch 1: a batch,
and a lease group, a delivery) whose leases ran out are handed back by calls each bounded
by the call's budget (RESCUE_LEASES), not by how many groups are due; the oldest end up
next out, across the calls.

Before, each call read the first RESCUE_LIMIT (1,000) due groups inside the script
(ZRANGEBYSCORE ... LIMIT 0 1000 WITHSCORES) and was given the batch keys of the first
1,000 groups, though its budget let it take at most RESCUE_LEASES (100) of them: with
10,000 such groups, 2-2.5 ms of server time a call where 100 deliveries of one fetch
take 1 ms. And it took the latest RESCUE_LEASES of those 1,000: once they were gone the
next call's 1,000 reached above them, so of more than 1,000 due groups each call took
the next ones above, the later deliveries ending up next out."""

from __future__ import annotations

from typing import Any

import pytest

import brokerkit
from brokerkit.backends.redis import _envelope
from brokerkit.backends.redis.list import RedisListBroker
from brokerkit.backends.redis.list.replies import unwrap
from brokerkit.backends.redis.list.upkeep import BATCH_COST
from brokerkit.backends.redis.list.upkeep_calls import RESCUE_LEASES, RESCUE_LIMIT, rescue_once
from tests.redis_cluster import RedisClusterSet
from tests.redis_server import RedisServer
from tests.script_monitor import ScriptMonitor

pytestmark = pytest.mark.redis_list

#: more due groups than a call read before, so that the order across calls shows
HELD = RESCUE_LIMIT + 2 * RESCUE_LEASES
#: the batches of one (fetched with prefetch 1) a call's budget takes: each costs its
#: delivery and BATCH_COST more, the last one whatever is left of the budget
PER_CALL = RESCUE_LEASES // (1 + BATCH_COST) + 1
#: the calls that hand back all HELD
CALLS = -(-HELD // PER_CALL)

#: Every lease of the topic ran out, in the order they were given: each group's score
#: and each expiry value's deadline moved back by the same amount (the delivery times
#: after the '.' kept), the latest a second before now.
_RAN_OUT = """
local t = redis.call('TIME')
t = tonumber(t[1]) * 1000 - 1000
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local shift = tonumber(last[2]) - t
local all = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #all, 2 do redis.call('ZADD', KEYS[1], tonumber(all[i + 1]) - shift, all[i]) end
local values = redis.call('HGETALL', KEYS[2])
for i = 1, #values, 2 do
  local v = values[i + 1]
  local dot = string.find(v, '.', 1, true)
  local deadline = tonumber(string.sub(v, 1, dot - 1)) - shift
  redis.call('HSET', KEYS[2], values[i], string.format('%d', deadline) .. string.sub(v, dot))
end
"""


def _hold(client: Any, holder: RedisListBroker, count: int) -> dict[str, float]:
    """``count`` messages fetched one a batch by consumer C (prefetch 1), which then
    leaves without settling them (renewals stopped), their leases run out: each body's
    delivery time (server ms, from its batch's expiry value)."""
    holder.publish_many("t", [f"m{i}" for i in range(count)])
    subscription = holder.subscribe("t", prefetch=1, consumer="C")
    deliveries = [subscription.receive(timeout=5) for _ in range(count)]
    holder._suspend_renewals()
    keys = holder._topic("t").keys
    names = []
    for delivery in deliveries:
        assert delivery is not None
        receipt = delivery.receipt
        dash, colon = receipt.index("-"), receipt.index(":")
        names.append(receipt[: dash + 1] + receipt[colon:])
    assert len(set(names)) == count  # one batch a delivery
    assert client.zcard(keys.deadlines) == count  # and one lease group
    values = client.hmget(keys.expiry, names)
    client.zrem(keys.consumers, "C")
    client.eval(_RAN_OUT, 2, keys.deadlines, keys.expiry)
    return {
        d.body: float(v.partition(b".")[2])  # type: ignore[union-attr]
        for d, v in zip(deliveries, values, strict=True)
    }


class _Calls:
    """A RESCUE script recording each call's KEYS before running it."""

    def __init__(self, script: Any) -> None:
        self.script = script
        self.keys: list[list[Any]] = []

    def __call__(self, keys: list[Any], args: list[Any], client: Any = None) -> Any:
        self.keys.append(list(keys))
        return self.script(keys=keys, args=args, client=client)


def _until_done(broker: RedisListBroker, most: int, run: Any) -> int:
    """What rescue calls hand back until one reports nothing more to do (at most
    ``most``: a rescue that never finishes fails)."""
    plan = broker._topic("t")
    total = 0
    for _ in range(most):
        moved, _, _, visited, *_ = rescue_once(broker._client, run, plan, "", None)
        total += int(moved)
        if visited < RESCUE_LIMIT:
            return total
    raise AssertionError("the rescue never finished: it reports more to do at every call")


def _rescued(client: Any, url: str, monitored: bool) -> None:
    with brokerkit.connect(url, visibility_timeout=600) as holder:
        assert isinstance(holder, RedisListBroker)
        times = _hold(client, holder, HELD)
        with brokerkit.connect(url, visibility_timeout=600) as rescuer:
            assert isinstance(rescuer, RedisListBroker)
            keys = rescuer._topic("t").keys
            calls = _Calls(rescuer._scripts["RESCUE"])
            most = 3 * CALLS
            if monitored:
                with ScriptMonitor(client) as seen:
                    assert _until_done(rescuer, most, calls) == HELD
                # each call reads at most RESCUE_LEASES due groups (the LIMIT of its read
                # of the deadlines), and runs a bounded many commands
                reads = [c for c in seen.commands if c[1:2] == (keys.deadlines,) and "LIMIT" in c]
                assert reads
                assert max(int(c[c.index("LIMIT") + 2]) for c in reads) <= RESCUE_LEASES
                assert max(map(len, seen.calls)) <= 12 * RESCUE_LEASES + 20
            else:
                assert _until_done(rescuer, most, calls) == HELD
            # each call is given the batch keys of at most RESCUE_LEASES groups
            batches = [
                [k for k in declared if k.startswith(keys.batches_prefix)]
                for declared in calls.keys
            ]
            assert max(map(len, batches)) <= RESCUE_LEASES
            assert len(calls.keys) <= CALLS + 2
            elements = reversed(client.lrange(keys.queue, 0, -1))  # next out first
            back = [(n, _envelope.decode("t", e).body) for n, e in map(unwrap, elements)]
            assert sorted(body for _, body in back) == sorted(times)  # each exactly once
            assert {n for n, _ in back} == {1}
            # the oldest next out, over every call
            order = [times[body] for _, body in back]
            assert order == sorted(order)
            assert client.zcard(keys.deadlines) == 0
            assert not client.keys(keys.batches_prefix + "*")


def test_each_call_takes_a_budget_of_due_groups_the_oldest_next_out(
    redis_server: RedisServer,
) -> None:
    """Counted, not timed."""
    client = redis_server.client()
    _rescued(client, redis_server.url("redis+list"), monitored=True)
    client.close()


def test_on_a_cluster_too(redis_cluster: RedisClusterSet, prefix: str) -> None:
    """Every key a call touches is declared: a cluster refuses an undeclared one."""
    client = redis_cluster.client()
    _rescued(client, redis_cluster.url("redis+list", prefix=prefix), monitored=False)
    client.close()


def test_a_dead_consumers_batches_take_their_lease_groups_with_them(
    redis_server: RedisServer,
) -> None:
    """A dead consumer's batches handed back leave no lease group behind: before, each
    stayed in the deadlines until it fell due (a unit of some later call's budget each),
    or until the rescue that emptied the expiry hash DELed them all in one command (with
    100,000 one-delivery batches: 22.8 ms of server time in one call)."""
    client = redis_server.client()
    url = redis_server.url("redis+list")
    with brokerkit.connect(url, visibility_timeout=600) as holder:
        assert isinstance(holder, RedisListBroker)
        keys = holder._topic("t").keys
        holder.publish_many("t", [f"m{i}" for i in range(3 * RESCUE_LEASES + 1)])
        live = holder.subscribe("t", prefetch=1, consumer="L")
        assert live.receive(timeout=5) is not None  # a live consumer's lease stays
        dead = holder.subscribe("t", prefetch=1, consumer="C")
        for _ in range(3 * RESCUE_LEASES):
            assert dead.receive(timeout=5) is not None
        holder._suspend_renewals()
        client.zadd(keys.consumers, {"C": 0})
        with brokerkit.connect(url, visibility_timeout=600) as rescuer:
            assert isinstance(rescuer, RedisListBroker)
            run = rescuer._scripts["RESCUE"]
            assert _until_done(rescuer, 10, run) == 3 * RESCUE_LEASES
        assert [g.endswith(b":L") for g in client.zrange(keys.deadlines, 0, -1)] == [True]
        assert client.llen(keys.queue) == 3 * RESCUE_LEASES
    client.close()
