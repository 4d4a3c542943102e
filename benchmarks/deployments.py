"""Failover and throughput figures of the Redis deployments (docs/deployments.md).

``python -m benchmarks.deployments`` starts a private redis-server, a 3-master +
3-replica Redis Cluster and a Sentinel set (tests/redis_cluster.py), and prints:

- publish_many and consume+ack throughput on one server and on the cluster;
- for each backend, with and without ``replicas=1``: a master killed (SIGKILL) under
  load on the cluster and under Sentinel, with the history check of
  tests/test_redis_failover.py (lost, delivered twice, acks undone, time to the first
  delivery after the kill).

Every server it starts is stopped at the end.
"""

from __future__ import annotations

import time

import brokerkit
from brokerkit.backends.redis._keys import Keyspace
from tests import test_redis_failover as failover
from tests.redis_cluster import RedisClusterSet, SentinelSet
from tests.redis_server import RedisServer


def throughput(url: str, label: str, n: int = 20000) -> None:
    with brokerkit.connect(url) as broker:
        started = time.perf_counter()
        for i in range(0, n, 1000):
            broker.publish_many("tp", range(i, i + 1000))
        published = n / (time.perf_counter() - started)
        started = time.perf_counter()
        got = 0
        subscription = broker.subscribe("tp", prefetch=100)
        while got < n:
            delivery = subscription.receive(timeout=5)
            if delivery is None:
                break
            delivery.ack()
            got += 1
        consumed = got / (time.perf_counter() - started)
    print(f"{label}: publish_many {published:,.0f} msg/s, consume+ack {consumed:,.0f} msg/s")


def main() -> None:
    schemes = ("redis+list", "redis+stream")
    with RedisServer() as single, RedisClusterSet() as cluster:
        for scheme in schemes:
            throughput(f"{single.url(scheme)}?prefix=bench1", f"one server {scheme}")
            throughput(cluster.url(scheme, prefix="bench2"), f"cluster {scheme}")
        for run, (scheme, replicas) in enumerate((s, r) for s in schemes for r in "01"):
            prefix = f"failover{run}"
            kill = failover._kill_cluster_master(cluster, Keyspace(prefix).topic("busy"))
            url = cluster.url(scheme, prefix=prefix, replicas=replicas, replica_timeout="1")
            history, recovery = failover._run_under_failover(url, "busy", kill)
            cluster.restart_dead()
            failover._report(f"cluster {scheme} replicas={replicas}", history, recovery)
    with SentinelSet() as sentinels:
        for run, (scheme, replicas) in enumerate((s, r) for s in schemes for r in "01"):
            url = sentinels.url(scheme, prefix=f"s{run}", replicas=replicas, replica_timeout="1")
            kill = failover._kill_sentinel_master(sentinels)
            history, recovery = failover._run_under_failover(url, "busy", kill)
            sentinels.restart_dead()
            failover._report(f"sentinel {scheme} replicas={replicas}", history, recovery)


if __name__ == "__main__":
    main()
