"""The contract suite over a Redis Cluster (3 masters, 3 replicas) and over a
Sentinel-managed master, written as a plugin author would: the same classes as on one
server, with cluster and Sentinel URLs. Each class runs a share of the profile's
hypothesis examples (the one-server classes run them all): what differs here is the
routing and the topology, not the promises. The suite's topics are random names, so
their slots, hence their masters, are spread over the whole cluster (checked below)."""

from __future__ import annotations

import pytest
import redis

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis._keys import Keyspace
from brokerkit.contracts import BrokerContract, RealTimeline, Timeline
from tests.redis_cluster import RedisClusterSet, SentinelSet


class _Deployed(BrokerContract):
    """A 3+3 cluster or a Sentinel set runs on the suite's cores beside the other
    workers: a message due again may come a little later than on one server, so the
    waits for it are widened as a backend behind a slow network widens them (tolerance
    2 s, 1 s by default). The promises stay the same: nothing comes early."""

    @pytest.fixture
    def timeline(self) -> Timeline:
        return RealTimeline(tolerance=2.0)


def _sync(url: str, prefix: str):  # type: ignore[no-untyped-def]
    return lambda **options: brokerkit.connect(url, prefix=prefix, **options)


def _async(url: str, prefix: str):  # type: ignore[no-untyped-def]
    return lambda **options: brokerkit.aio.connect(url, prefix=prefix, **options)


class TestRedisListOnClusterContract(_Deployed):
    example_share = 0.25

    @pytest.fixture
    def make_broker(self, redis_cluster: RedisClusterSet, prefix: str):  # type: ignore[no-untyped-def]
        return _sync(redis_cluster.url("redis+list"), prefix)


class TestRedisListOnClusterAsyncContract(_Deployed):
    example_share = 0.1

    @pytest.fixture
    def make_broker(self, redis_cluster: RedisClusterSet, prefix: str):  # type: ignore[no-untyped-def]
        return _async(redis_cluster.url("redis+list"), prefix)


class TestRedisStreamOnClusterContract(_Deployed):
    example_share = 0.25

    @pytest.fixture
    def make_broker(self, redis_cluster: RedisClusterSet, prefix: str):  # type: ignore[no-untyped-def]
        return _sync(redis_cluster.url("redis+stream"), prefix)


class TestRedisStreamOnClusterAsyncContract(_Deployed):
    example_share = 0.1

    @pytest.fixture
    def make_broker(self, redis_cluster: RedisClusterSet, prefix: str):  # type: ignore[no-untyped-def]
        return _async(redis_cluster.url("redis+stream"), prefix)


class TestRedisListOnSentinelContract(_Deployed):
    example_share = 0.1

    @pytest.fixture
    def make_broker(self, redis_sentinel: SentinelSet, prefix: str):  # type: ignore[no-untyped-def]
        return _sync(redis_sentinel.url("redis+list"), prefix)


class TestRedisStreamOnSentinelAsyncContract(_Deployed):
    example_share = 0.1

    @pytest.fixture
    def make_broker(self, redis_sentinel: SentinelSet, prefix: str):  # type: ignore[no-untyped-def]
        return _async(redis_sentinel.url("redis+stream"), prefix)


def test_topics_spread_over_every_master(redis_cluster: RedisClusterSet, prefix: str) -> None:
    """A handful of topic names already lands on all three masters: the keyspace puts
    each topic in its own slot, not all topics in one."""
    client = redis_cluster.client()
    try:
        space = Keyspace(prefix)
        masters = {
            client.get_node_from_key(space.topic(f"t{i}")).name  # type: ignore[union-attr]
            for i in range(30)
        }
    finally:
        client.close()
    assert len(masters) == 3


def test_cluster_clients_reach_every_master(redis_cluster: RedisClusterSet, prefix: str) -> None:
    """Publish and consume on topics of every master through one broker."""
    topics = [f"spread{i}" for i in range(12)]
    with brokerkit.connect(redis_cluster.url("redis+stream"), prefix=prefix) as broker:
        for topic in topics:
            broker.publish(topic, topic)
        for topic in topics:
            got = next(iter(broker.consume(topic, timeout=5)))
            assert got.body == topic
            got.ack()
    client = redis_cluster.client()
    try:
        owners = {client.get_node_from_key(Keyspace(prefix).topic(t)).name for t in topics}  # type: ignore[union-attr]
        assert len(owners) == 3
    except redis.RedisError:  # pragma: no cover - the cluster is up for the whole test
        raise
    finally:
        client.close()


class TestRedisPubSubOnClusterContract(_Deployed):
    """Sharded pub/sub: everything but PATTERNS, which this class does not declare."""

    example_share = 0.25

    @pytest.fixture
    def make_broker(self, redis_cluster: RedisClusterSet, prefix: str):  # type: ignore[no-untyped-def]
        return _sync(redis_cluster.url("redis+pubsub"), prefix)


class TestRedisPubSubOnClusterAsyncContract(_Deployed):
    example_share = 0.1

    @pytest.fixture
    def make_broker(self, redis_cluster: RedisClusterSet, prefix: str):  # type: ignore[no-untyped-def]
        return _async(redis_cluster.url("redis+pubsub"), prefix)


class TestRedisPubSubOnSentinelContract(_Deployed):
    example_share = 0.1

    @pytest.fixture
    def make_broker(self, redis_sentinel: SentinelSet, prefix: str):  # type: ignore[no-untyped-def]
        return _sync(redis_sentinel.url("redis+pubsub"), prefix)
