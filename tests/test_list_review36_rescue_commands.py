"""redis+list: a rescue call's commands are bounded by its budget (RESCUE_LEASES) whatever
shape the deliveries are held in.

Before, a consumer fed one message a fetch (prefetch 1: a batch, a lease group and an
expiry value a delivery) whose leases ran out cost a rescue call nine commands a
delivery (its flags and expiry value read, its element read and pushed back, its count,
then its batch list, fetches field, expiry value and lease group freed one by one):
about 900 commands a call of 100, 1.7-2.9 ms of server time on a quiet machine and
5-7 ms on a slow hour (issue 18: no bookkeeping call above 5 ms), where 100 deliveries
of one fetch take about 400. Now the flags and values are read with one ``HMGET`` each
and the batches gone freed together: about three commands a delivery. A dead
consumer's batches are freed together too. Since a batch costs the budget BATCH_COST
more than its delivery (2e443f3), a call visits about 34 batches of one: its commands
are bounded by those, as a bound by the budget's deliveries held nine a batch too.

Counted commands (``MONITOR``), never durations."""

from __future__ import annotations

import pytest

import brokerkit
from brokerkit.backends.redis.list import RedisListBroker
from brokerkit.backends.redis.list.upkeep_calls import RESCUE_LEASES
from tests.redis_server import RedisServer
from tests.script_monitor import ScriptMonitor
from tests.test_list_review34_rescue_due_groups import PER_CALL
from tests.test_list_review34_rescue_due_groups import _hold as _hold_expired
from tests.test_list_review34_rescue_due_groups import _until_done as _until_done_expired
from tests.test_list_review34_rescue_many_batches import _back, _gone
from tests.test_list_review34_rescue_many_batches import _hold as _hold_dead
from tests.test_list_review34_rescue_many_batches import _until_done as _until_done_dead

pytestmark = pytest.mark.redis_list

HELD = 3 * RESCUE_LEASES + 17
#: the calls that hand back HELD batches of one (PER_CALL a call)
CALLS = -(-HELD // PER_CALL)


def test_expired_batches_of_one_cost_a_call_three_commands_a_delivery(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    url = redis_server.url("redis+list")
    with brokerkit.connect(url, visibility_timeout=600) as holder:
        assert isinstance(holder, RedisListBroker)
        times = _hold_expired(client, holder, HELD)
        with brokerkit.connect(url, visibility_timeout=600) as rescuer:
            assert isinstance(rescuer, RedisListBroker)
            keys = rescuer._topic("t").keys
            with ScriptMonitor(client, arguments=1) as seen:
                run = rescuer._scripts["RESCUE"]
                assert _until_done_expired(rescuer, 3 * HELD, run) == HELD
            # commands a call by the batches it visits (PER_CALL): 115 a call of 34 (about
            # 3.4 a batch); with the per-batch reads and frees of before c4f6bc3, 313 (9 a
            # batch). (A bound by the budget's deliveries, 3 * RESCUE_LEASES, held both.)
            assert max(map(len, seen.calls)) <= 4 * PER_CALL + 30
            # a budget's batches each
            assert len(seen.calls) <= CALLS + 2
            back = _back(client, rescuer)
            assert sorted(body for _, body in back) == sorted(times)  # each exactly once
            order = [times[body] for _, body in back]
            assert order == sorted(order)  # the oldest next out
            assert client.zcard(keys.deadlines) == 0
            assert not client.keys(keys.batches_prefix + "*")
            assert client.hlen(keys.fetches("C")) == 0
            assert client.hlen(keys.expiry) == 0
    client.close()


def test_a_dead_consumers_batches_of_one_are_freed_together(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    url = redis_server.url("redis+list")
    with brokerkit.connect(url, visibility_timeout=600) as holder:
        assert isinstance(holder, RedisListBroker)
        times = _hold_dead(client, holder, "C", HELD)
        with brokerkit.connect(url, visibility_timeout=600) as rescuer:
            assert isinstance(rescuer, RedisListBroker)
            keys = rescuer._topic("t").keys
            with ScriptMonitor(client, arguments=1) as seen:
                assert _until_done_dead(rescuer, 3 * HELD) == HELD
            frees = [
                c
                for c in seen.commands
                if (c[0] == "DEL" and c[1].startswith(keys.batches_prefix))
                or (c[0] == "HDEL" and c[1] == keys.fetches("C"))
            ]
            # before: a DEL and an HDEL a batch
            assert len(frees) <= 4 * (CALLS + 2)
            # 221 a call of 34 batches (about 6.5 a batch); freed one by one, 320
            assert max(map(len, seen.calls)) <= 7 * PER_CALL + 30
            back = _back(client, rescuer)
            assert sorted(body for _, body in back) == sorted(times)  # each exactly once
            order = [times[body] for _, body in back]
            assert order == sorted(order)
            _gone(client, rescuer, "C")
    client.close()
