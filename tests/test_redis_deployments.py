"""URL forms of the Redis deployments (one server, Cluster, Sentinel), their refusals,
and the replica wait (``replicas=``) on each."""

from __future__ import annotations

import asyncio

import pytest

import brokerkit
import brokerkit.aio
from brokerkit._url import BrokerURL
from brokerkit.backends.redis._deployment import Deployment
from brokerkit.exceptions import ConnectionFailed, InvalidOption, InvalidURL, ReplicationTimeout
from tests.conftest import RedisTarget
from tests.redis_cluster import RedisClusterSet, SentinelSet
from tests.redis_server import _free_port as free_port

SCHEMES = ["redis+list", "redis+stream", "redis+pubsub"]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(
    ("tail", "error", "words"),
    [
        ("h1:1,h2:2/0", InvalidURL, "cluster=true"),
        ("h1:1,h2:2/3?cluster=true", InvalidURL, "database 0 only"),
        ("h1:1?db=2&cluster=true", InvalidURL, "database 0 only"),
        ("h1:1/0?cluster=true&sentinel=m", InvalidOption, "cannot be combined"),
        ("h1:1/0?sentinel_password=x", InvalidOption, "sentinel_password only"),
        ("h1:1/0?replicas=-1", InvalidOption, "replicas"),
        ("h1:1/0?replica_timeout=0", InvalidOption, "replica_timeout"),
        ("h1:1,h2:x/0?cluster=true", InvalidURL, "numeric port"),
    ],
)
def test_bad_deployment_urls_are_refused_at_connect(
    scheme: str, tail: str, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        brokerkit.connect(f"{scheme}://{tail}")


def test_no_host_with_cluster_is_refused() -> None:
    with pytest.raises(InvalidURL, match="names no host"):
        brokerkit.connect("redis+list:///0?cluster=true")


def test_sentinel_password_never_shows() -> None:
    url = "redis+stream://s1:26379,s2:26379/0?sentinel=m&sentinel_password=hunter2"
    with brokerkit.connect(url) as broker:  # nothing connects before the first command
        assert "hunter2" not in repr(broker.url) and "hunter2" not in str(broker.url)
        assert "hunter2" not in repr(broker.options)
    deployment = Deployment.of(BrokerURL.parse(url))
    assert deployment.sentinel_password == "hunter2" and "hunter2" not in repr(deployment)


@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream", "redis+pubsub"])
def test_a_cluster_with_no_reachable_seed_is_a_connection_failure(scheme: str) -> None:
    port = free_port()  # nothing listens there
    url = f"{scheme}://127.0.0.1:{port}/0?cluster=true"
    with pytest.raises(ConnectionFailed, match="could not be reached"), brokerkit.connect(url) as b:
        b.publish("orders", "x")


@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream"])
def test_replica_wait_without_replicas_fails_but_keeps_the_write(
    redis_target: RedisTarget, prefix: str, scheme: str
) -> None:
    """One server has no replica: ``replicas=1`` reports ReplicationTimeout, naming how
    many confirmed; the message is stored all the same (WAIT undoes nothing)."""
    url = redis_target.url(scheme, prefix=prefix, replicas="1", replica_timeout="0.05")
    with brokerkit.connect(url) as broker:
        with pytest.raises(ReplicationTimeout, match="0 of the 1 replicas") as caught:
            broker.publish("t", "kept")
        assert (caught.value.acknowledged, caught.value.wanted) == (0, 1)
        assert broker.inspect("t").length == 1
        delivery = broker.subscribe("t").receive(timeout=5)
        assert delivery is not None
        with pytest.raises(ReplicationTimeout):
            delivery.ack()
        assert delivery.settled  # the ack was applied on the master: nothing to renew
        assert broker.inspect("t").in_flight == 0


@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream"])
def test_replica_wait_on_a_cluster(
    redis_cluster: RedisClusterSet, prefix: str, scheme: str
) -> None:
    """On a cluster every master has a replica: publish, publish_many, ack and nack
    return once it has the write, for topics on every master."""
    url = redis_cluster.url(scheme, prefix=prefix, replicas="1", replica_timeout="5")
    topics = [f"w{i}" for i in range(6)]
    with brokerkit.connect(url) as broker:
        for topic in topics:
            broker.publish(topic, 1)
            broker.publish_many(topic, [2, 3])
            got = list(broker.consume(topic, timeout=2, limit=3, prefetch=3))
            assert [d.body for d in got] == [1, 2, 3]
            got[0].nack(requeue=False)
            broker.ack(*got[1:])
            info = broker.inspect(topic)
            assert (info.in_flight, info.dead_lettered) == (0, 1)


def test_replica_wait_under_sentinel_async(redis_sentinel: SentinelSet, prefix: str) -> None:
    url = redis_sentinel.url("redis+list", prefix=prefix, replicas="1")

    async def main() -> None:
        async with brokerkit.aio.connect(url) as broker:
            await broker.publish("t", "x")
            async for delivery in broker.consume("t", timeout=2):
                await delivery.ack()
                break
            assert (await broker.inspect("t")).in_flight == 0

    asyncio.run(main())


def test_pubsub_on_a_cluster_is_sharded_and_refuses_patterns(
    redis_cluster: RedisClusterSet, prefix: str
) -> None:
    from brokerkit import Capability
    from brokerkit.backends.redis.pubsub import ShardedRedisPubSubBroker
    from brokerkit.exceptions import Unsupported

    with brokerkit.connect(redis_cluster.url("redis+pubsub"), prefix=prefix) as broker:
        assert isinstance(broker, ShardedRedisPubSubBroker)
        assert Capability.PATTERNS not in broker.capabilities
        assert Capability.FANOUT in broker.capabilities
        with pytest.raises(Unsupported, match="PATTERNS"):
            broker.subscribe("room.*", pattern=True)
        topics = [f"room{i}" for i in range(6)]  # on every master
        subscriptions = [broker.subscribe(t) for t in topics]
        for topic in topics:
            assert broker.publish_counted(topic, topic).receivers == 1
        for topic, subscription in zip(topics, subscriptions, strict=True):
            delivery = subscription.receive(timeout=5)
            assert delivery is not None and delivery.body == topic
            assert broker.inspect(topic).details["subscribers"] == 1


@pytest.mark.parametrize("scheme", ["redis+stream", "redis+pubsub"])
def test_sentinel_reconnects_to_the_master_not_a_default_address(
    redis_sentinel: SentinelSet, prefix: str, scheme: str
) -> None:
    """Commands retried after their connection was dropped reach the master the
    sentinels name (redis-py alone would dial localhost:6379 on that path)."""
    master = redis_sentinel.current_master()
    with brokerkit.connect(redis_sentinel.url(scheme, prefix=prefix)) as broker:
        subscription = broker.subscribe("t") if scheme == "redis+pubsub" else None
        broker.publish("t", 1)
        admin = master.client()
        try:
            admin.client_kill_filter(_type="normal", skipme=True)
        finally:
            admin.close()
        broker.publish("t", 2)
        if subscription is None:
            assert broker.inspect("t").length == 2
        else:
            got = [subscription.receive(timeout=5) for _ in range(2)]
            assert 2 in [d.body for d in got if d is not None]
    check = master.client()
    try:
        if scheme == "redis+stream":
            assert check.xlen(f"{prefix}:{{t}}") == 2
    finally:
        check.close()


@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream"])
def test_scripts_flushed_on_every_node_are_loaded_again(
    redis_cluster: RedisClusterSet, prefix: str, scheme: str
) -> None:
    """A master without brokerkit's scripts (restarted, promoted, SCRIPT FLUSH) gets
    them where the keys are, for topics on every master."""
    with brokerkit.connect(redis_cluster.url(scheme, prefix=prefix)) as broker:
        topics = [f"f{i}" for i in range(6)]
        for topic in topics:
            broker.publish(topic, 1)
        for node in redis_cluster.nodes:
            admin = node.client()
            try:
                admin.script_flush()
            finally:
                admin.close()
        for topic in topics:
            delivery = next(iter(broker.consume(topic, timeout=5)))
            delivery.ack()
            assert broker.inspect(topic).in_flight == 0


def test_scripts_flushed_on_one_server_are_loaded_again(
    redis_target: RedisTarget, prefix: str
) -> None:
    with brokerkit.connect(redis_target.url("redis+list", prefix=prefix)) as broker:
        broker.publish("t", 1)
        client = redis_target.client()
        try:
            client.script_flush()
            delivery = next(iter(broker.consume("t", timeout=5)))
            delivery.ack()
            assert not client.script_exists("x" * 40)[0]
        finally:
            client.close()


def test_an_idle_list_consumer_on_a_cluster_keeps_its_heartbeat(
    redis_cluster: RedisClusterSet, prefix: str
) -> None:
    """On a cluster a waiting consumer's BLMOVE and lease script are two round trips,
    and a BLMOVE that times out runs no script: it must not count as a heartbeat, or an
    idle consumer would never renew its registration (rescue would take it for dead)."""
    url = redis_cluster.url("redis+list", prefix=prefix)
    with brokerkit.connect(url, visibility_timeout=1) as broker:
        subscription = broker.subscribe("idle")
        assert subscription.receive(timeout=0) is None  # registers the consumer
        consumers = broker.inspect("idle").details["consumers_key"]
        client = redis_cluster.client()
        try:
            first = client.zscore(consumers, subscription.consumer)
            assert first is not None
            # idle well past a quarter heartbeat (heartbeats last max(vt, 5 s))
            assert subscription.receive(timeout=2.5) is None
            later = client.zscore(consumers, subscription.consumer)
        finally:
            client.close()
        assert later is not None and later > first, "the idle consumer's heartbeat was not renewed"


def test_a_list_multi_topic_settle_under_a_replica_timeout_settles_every_topic(
    redis_target: RedisTarget, prefix: str
) -> None:
    """redis+list, ``replicas=1`` on a server without a replica: an ack (and a nack) of
    deliveries of three topics is applied on every topic, then one ReplicationTimeout
    says so (the first topic's wait used to raise before the others were sent)."""
    url = redis_target.url("redis+list", prefix=prefix, replicas="1", replica_timeout="0.01")
    topics = ("alpha", "beta", "gamma")
    with brokerkit.connect(url) as broker:
        subscriptions = [broker.subscribe(topic) for topic in topics]
        for topic in topics:
            with pytest.raises(ReplicationTimeout):
                broker.publish(topic, topic)  # stored all the same
        got = [s.receive(timeout=5) for s in subscriptions]
        deliveries = [d for d in got if d is not None]
        assert len(deliveries) == 3
        with pytest.raises(ReplicationTimeout) as caught:
            broker.ack(*deliveries)
        assert all(d.settled for d in deliveries)
        assert [broker.inspect(t).in_flight for t in topics] == [0, 0, 0]
        assert "applied the ack of 3 deliveries on the master" in str(caught.value)
        assert "'alpha', 'beta', 'gamma'" in str(caught.value)
        assert caught.value.stale == ()
        for topic in topics:
            with pytest.raises(ReplicationTimeout):
                broker.publish(topic, topic)
        again = [s.receive(timeout=5) for s in subscriptions]
        with pytest.raises(ReplicationTimeout, match="applied the nack"):
            broker.nack(*[d for d in again if d is not None], requeue=False)
        assert [broker.inspect(t).in_flight for t in topics] == [0, 0, 0]
        dead = [broker.inspect(broker.dead_letter_topic(t)).length for t in topics]
        assert dead == [1, 1, 1]
