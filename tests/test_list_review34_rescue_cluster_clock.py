"""redis+list on a cluster: the rescue's caller asks the time of the topic's node, whose
clock the RESCUE script reads, not of the cluster client's default node.

Before (23656ae), the caller's TIME went with its reads to the default node: with that
node's clock ahead by more than it takes 100 leases to fall due, every call was given
groups the script took for not due yet and read none it was given; no progress, `more`
at every call (found by a review, with the caller's time shifted 3 s)."""

from __future__ import annotations

import pytest
import redis

import brokerkit
from brokerkit.backends.redis.list import RedisListBroker
from tests.redis_cluster import RedisClusterSet

pytestmark = pytest.mark.redis_list


def _time_calls(node: redis.Redis) -> int:
    return int(node.info("commandstats").get("cmdstat_time", {}).get("calls", 0))


def test_the_rescue_asks_the_time_of_the_topics_node(
    redis_cluster: RedisClusterSet, prefix: str
) -> None:
    url = redis_cluster.url("redis+list", prefix=prefix)
    with brokerkit.connect(url, visibility_timeout=60) as broker:
        assert isinstance(broker, RedisListBroker)
        client = broker._client
        default = client.get_default_node()
        topic = next(
            f"t{i}"
            for i in range(1000)
            if client.get_node_from_key(broker._topic(f"t{i}").keys.deadlines).name != default.name
        )
        broker.publish(topic, b"m")
        plan = broker._topic(topic)
        broker._rescue(plan, "", None)  # once: every script loaded, every node reached
        elsewhere = redis.Redis(host=default.host, port=default.port)
        elsewhere.config_resetstat()
        broker._rescue(plan, "", None)
        assert _time_calls(elsewhere) == 0
        here = client.get_node_from_key(plan.keys.deadlines)
        assert here.name != default.name
        elsewhere.close()
