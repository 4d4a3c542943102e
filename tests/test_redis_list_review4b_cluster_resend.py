"""redis+list on a cluster with ``replicas``: a settlement runs on a connection to the
master of its topic's slot kept for the replica wait, which must never resend the
script itself (redis-py's default resends a command up to 3 times on a lost
connection or a timeout): a resend not marked as a retry would find the leases the
lost attempt settled gone and report them stale (a false ``StaleDelivery``).
brokerkit resends it, marked (see docs/backends/redis-list.md). Publishes there are
not resent by redis-py either, as everywhere else in redis+list (``retries=0``)."""

from __future__ import annotations

import brokerkit
from brokerkit.backends.redis.list import RedisListBroker
from tests.redis_cluster import RedisClusterSet


def test_the_replica_waits_connections_resend_nothing(
    redis_cluster: RedisClusterSet, prefix: str
) -> None:
    url = redis_cluster.url("redis+list", prefix=prefix, replicas="1", replica_timeout="5")
    with brokerkit.connect(url) as broker:
        assert isinstance(broker, RedisListBroker)
        broker.publish("orders", "job")
        with broker.subscribe("orders") as subscription:
            delivery = subscription.receive(timeout=5)
            assert delivery is not None
            delivery.ack()
        durable = broker._durable
        assert durable is not None and durable._nodes  # the wait ran on a node's client
        for node in durable._nodes.values():
            assert node.get_retry().get_retries() == 0
        assert broker.inspect("orders").in_flight == 0
