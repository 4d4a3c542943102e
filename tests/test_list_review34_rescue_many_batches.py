"""redis+list: a dead consumer holding many batches (a prefetch-1 consumer holds one a
fetch) is rescued by calls each bounded by the call's budget (RESCUE_LEASES), not by how
many batches it holds; the oldest of its deliveries end up next out, across the calls.

Before, every rescue call's second script call was given every batch key of the dead
consumer (10,000 keys for 10,000 batches) and listed its whole fetches hash inside the
script (HKEYS) to check each was declared, though it handed back at most RESCUE_LEASES:
about N / 100 calls of O(N) each (15.5 ms of server time a call for 10,000 batches).
And across calls the batches came back in the hash's order, not the oldest last."""

from __future__ import annotations

from typing import Any

import pytest

import brokerkit
from brokerkit.backends.redis import _envelope
from brokerkit.backends.redis.list import RedisListBroker
from brokerkit.backends.redis.list.replies import unwrap
from brokerkit.backends.redis.list.upkeep_calls import RESCUE_LEASES, RESCUE_LIMIT, rescue_once
from tests.redis_cluster import RedisClusterSet
from tests.redis_server import RedisServer
from tests.script_monitor import ScriptMonitor

pytestmark = pytest.mark.redis_list

HELD = 3 * RESCUE_LEASES


def _hold(client: Any, holder: RedisListBroker, consumer: str, count: int) -> dict[str, float]:
    """``count`` messages m0, m1... fetched one a batch by ``consumer`` (prefetch 1),
    which then dies (no renewal, its heartbeat long ended): each body's delivery time
    (server ms, from its batch's expiry value)."""
    holder.publish_many("t", [f"m{i}" for i in range(count)])
    subscription = holder.subscribe("t", prefetch=1, consumer=consumer)
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
    values = client.hmget(keys.expiry, names)
    client.zadd(keys.consumers, {consumer: 0})
    return {
        d.body: float(v.partition(b".")[2])  # type: ignore[union-attr]
        for d, v in zip(deliveries, values, strict=True)
    }


def _until_done(broker: RedisListBroker, most: int, run: Any = None) -> int:
    """What rescue calls hand back until one reports nothing more to do (at most
    ``most``: a rescue that never finishes fails)."""
    plan = broker._topic("t")
    total = 0
    for _ in range(most):
        script = run or broker._scripts["RESCUE"]
        moved, _, _, visited, *_ = rescue_once(broker._client, script, plan, "", None)
        total += int(moved)
        if visited < RESCUE_LIMIT:
            return total
    raise AssertionError("the rescue never finished: it reports more to do at every call")


def _back(client: Any, broker: RedisListBroker) -> list[tuple[int, Any]]:
    """The queue's elements, next out first: (deliveries before, body)."""
    keys = broker._topic("t").keys
    elements = reversed(client.lrange(keys.queue, 0, -1))
    return [(n, _envelope.decode("t", e).body) for n, e in map(unwrap, elements)]


def _gone(client: Any, broker: RedisListBroker, consumer: str) -> None:
    keys = broker._topic("t").keys
    assert client.zscore(keys.consumers, consumer) is None
    assert client.exists(keys.fetches(consumer), keys.leases(consumer)) == 0
    assert not client.keys(keys.batches_prefix + "*")


class _Calls:
    """A RESCUE script recording each call's KEYS and ARGV before running it."""

    def __init__(self, script: Any) -> None:
        self.script = script
        self.calls: list[tuple[list[Any], list[Any]]] = []

    def __call__(self, keys: list[Any], args: list[Any], client: Any = None) -> Any:
        self.calls.append((list(keys), list(args)))
        return self.script(keys=keys, args=args, client=client)


def test_each_call_is_bounded_by_its_budget_not_by_the_batches_held(
    redis_server: RedisServer,
) -> None:
    """Counted, not timed: no script lists a fetches hash of more batches than a call's
    budget (HKEYS; HGETALL, HVALS), and
    no call is given more batch keys than the lease groups it may visit name plus
    RESCUE_LEASES (more batches than RESCUE_LIMIT groups: each is a group of its own)."""
    client = redis_server.client()
    url = redis_server.url("redis+list")
    count = RESCUE_LIMIT + 2 * RESCUE_LEASES
    with brokerkit.connect(url, visibility_timeout=600) as holder:
        assert isinstance(holder, RedisListBroker)
        _hold(client, holder, "C", count)
        with brokerkit.connect(url, visibility_timeout=600) as rescuer:
            assert isinstance(rescuer, RedisListBroker)
            keys = rescuer._topic("t").keys
            calls = _Calls(rescuer._scripts["RESCUE"])
            with ScriptMonitor(client, arguments=1) as seen:
                assert _until_done(rescuer, 3 * count // RESCUE_LEASES, calls) == count
            # only once it holds no more than a call's budget (RESCUE_LEASES) is its
            # fetches hash listed in a script: the last call's
            lists = [c for c in seen.commands if c[1:] == (keys.fetches("C"),)]
            assert {name for name, _ in lists} <= {"HLEN", "HGET", "HSET", "HDEL", "HKEYS"}
            assert lists.count(("HKEYS", keys.fetches("C"))) <= 1
            batches = [
                [k for k in declared if k.startswith(keys.batches_prefix)]
                for declared, _ in calls.calls
            ]
            assert max(map(len, batches)) <= RESCUE_LIMIT + RESCUE_LEASES
            _gone(client, rescuer, "C")
    client.close()


def _rescued_in_order(client: Any, holder: RedisListBroker, url: str, consumer: str) -> None:
    times = _hold(client, holder, consumer, HELD)
    with brokerkit.connect(url, visibility_timeout=600) as rescuer:
        assert isinstance(rescuer, RedisListBroker)
        assert _until_done(rescuer, 3 * HELD // RESCUE_LEASES) == HELD
        back = _back(client, rescuer)
        assert sorted(body for _, body in back) == sorted(times)  # each exactly once
        assert {n for n, _ in back} == {1}
        # the oldest next out, over every call (a call hands back RESCUE_LEASES)
        order = [times[body] for _, body in back]
        assert order == sorted(order)
        _gone(client, rescuer, consumer)


def test_every_delivery_comes_back_once_the_oldest_next_out(redis_server: RedisServer) -> None:
    client = redis_server.client()
    url = redis_server.url("redis+list")
    with brokerkit.connect(url, visibility_timeout=600) as holder:
        assert isinstance(holder, RedisListBroker)
        _rescued_in_order(client, holder, url, "C")
    client.close()


def test_on_a_cluster_too(redis_cluster: RedisClusterSet, prefix: str) -> None:
    """Every key a call touches is declared: a cluster refuses an undeclared one."""
    url = redis_cluster.url("redis+list", prefix=prefix)
    with brokerkit.connect(url, visibility_timeout=600) as holder:
        assert isinstance(holder, RedisListBroker)
        client = redis_cluster.client()
        _rescued_in_order(client, holder, url, "C")
        client.close()


def test_hostile_names_do_not_stop_the_rescue(redis_server: RedisServer) -> None:
    """A consumer named with ':' whose fetches hash holds another program's field with
    ':' in it too (its batch list holding an element): all of it comes back, and the
    rescue finishes."""
    client = redis_server.client()
    url = redis_server.url("redis+list")
    consumer = "a:b-1:c"
    with brokerkit.connect(url, visibility_timeout=600) as holder:
        assert isinstance(holder, RedisListBroker)
        keys = holder._topic("t").keys
        times = _hold(client, holder, consumer, HELD)
        for field in ("x:y", "x-1:a:b", "z-"):
            client.hset(keys.fetches(consumer), field, "0")
            client.rpush(keys.batch(field, consumer), f"lost {field}")
            client.hset(keys.expiry, f"{field}:{consumer}", "99999999999999.0")
        with brokerkit.connect(url, visibility_timeout=600) as rescuer:
            assert isinstance(rescuer, RedisListBroker)
            assert _until_done(rescuer, 3 * HELD // RESCUE_LEASES) == HELD + 3
            back = client.lrange(keys.queue, 0, -1)
            assert sum(e.startswith(b"lost ") for e in back) == 3
            assert len(back) == len(times) + 3
            _gone(client, rescuer, consumer)
    client.close()
