"""redis+list: a rescue call reads the flags and expiry values of the batches its walk
reaches, not about three times as many.

Before, the read of the due groups' flags and expiry values (one HMGET each, before the
walk) charged each group its receipts but not the BATCH_COST the walk charges a batch:
of batches of one (prefetch 1) it read 100 where the walk took 34. Now it charges each
group as the walk does. Counted fields (MONITOR), not durations."""

from __future__ import annotations

import pytest

import brokerkit
from brokerkit.backends.redis.list import RedisListBroker
from brokerkit.backends.redis.list.upkeep_calls import RESCUE_LEASES, rescue_once
from tests.redis_server import RedisServer
from tests.script_monitor import ScriptMonitor
from tests.test_list_review34_rescue_due_groups import PER_CALL, _hold

pytestmark = pytest.mark.redis_list


def test_a_call_reads_the_flags_of_the_batches_its_walk_reaches(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    url = redis_server.url("redis+list")
    with brokerkit.connect(url, visibility_timeout=600) as holder:
        assert isinstance(holder, RedisListBroker)
        _hold(client, holder, 2 * RESCUE_LEASES)
        with brokerkit.connect(url, visibility_timeout=600) as rescuer:
            assert isinstance(rescuer, RedisListBroker)
            keys = rescuer._topic("t").keys
            run = rescuer._scripts["RESCUE"]
            with ScriptMonitor(client) as seen:
                reply = rescue_once(rescuer._client, run, rescuer._topic("t"), "", None)
            assert reply[0] == PER_CALL
            fetches = keys.fetches("C")
            flags = [c[2:] for c in seen.commands if c[:2] == ("HMGET", fetches)]
            # before: 100 fields read, 34 of them walked
            assert sum(map(len, flags)) == PER_CALL
            # and none read one by one: the walk reaches no batch the read did not
            assert ("HGET", fetches) not in {c[:2] for c in seen.commands}
    client.close()
