"""Failover under load: the master that serves a busy topic is killed (SIGKILL) while a
producer and a consumer run, and its replica takes over (a Redis Cluster promotes it
itself; under Sentinel the sentinels do). The consume loop carries on, and with
``replicas=1`` nothing that publish or ack reported done is lost: a history check over
the message ids, as in the fault tests. Also: a slot moved by ``redis-cli --cluster
reshard`` while consuming."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

import brokerkit
from brokerkit.backends.redis._keys import Keyspace
from brokerkit.exceptions import BrokerError, StaleDelivery
from tests.redis_cluster import RedisClusterSet, SentinelSet
from tests.redis_server import RedisServer, find_redis_cli

#: Messages published in each run (one at a time, as a busy producer does).
MESSAGES = 300


@dataclass
class History:
    """What each side was told, in order."""

    published: set[int] = field(default_factory=set)  # publish returned
    unsure: set[int] = field(default_factory=set)  # publish raised: stored or not
    deliveries: list[tuple[float, int]] = field(default_factory=list)
    acked_at: dict[int, float] = field(default_factory=dict)  # ack returned
    failures: list[BaseException] = field(default_factory=list)
    publish_errors: int = 0
    ack_errors: int = 0

    def delivered(self) -> set[int]:
        return {body for _, body in self.deliveries}

    def lost(self) -> set[int]:
        """Published (reported stored) but never delivered."""
        return self.published - self.delivered()

    def acks_lost(self) -> set[int]:
        """Delivered again after an ack reported done."""
        return {body for at, body in self.deliveries if self.acked_at.get(body, at) < at}

    def duplicates(self) -> int:
        return len(self.deliveries) - len(self.delivered())


def _run_under_failover(url: str, topic: str, kill: Callable[[], None]) -> tuple[History, float]:
    """Publish MESSAGES ids to ``topic`` and consume them while ``kill`` runs once a
    third are through; return the history and the seconds from the kill to the first
    delivery after it."""
    history = History()
    killed_at: list[float] = []
    third = threading.Event()
    done_publishing = threading.Event()

    def produce() -> None:
        with brokerkit.connect(url) as broker:
            for i in range(MESSAGES):
                try:
                    broker.publish(topic, i)
                except BrokerError:
                    history.unsure.add(i)
                    history.publish_errors += 1
                else:
                    history.published.add(i)
                if i == MESSAGES // 3:
                    third.set()
        done_publishing.set()

    def consume() -> None:
        try:
            with brokerkit.connect(url, visibility_timeout=3) as broker:
                subscription = broker.subscribe(topic)
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline:
                    delivery = subscription.receive(timeout=0.5)
                    if delivery is None:
                        finished = done_publishing.is_set()
                        if finished and history.delivered() >= history.published:
                            return
                        continue
                    history.deliveries.append((time.monotonic(), delivery.body))
                    try:
                        delivery.ack()
                    except StaleDelivery:  # the lease ran out meanwhile: redelivered
                        history.ack_errors += 1
                    except BrokerError:
                        history.ack_errors += 1
                    else:
                        history.acked_at[delivery.body] = time.monotonic()
        except BaseException as exc:
            history.failures.append(exc)

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for thread in threads:
        thread.start()
    assert third.wait(60)
    killed_at.append(time.monotonic())
    kill()
    for thread in threads:
        thread.join(120)
    after = [at for at, _ in history.deliveries if at > killed_at[0]]
    recovery = (min(after) - killed_at[0]) if after else float("inf")
    return history, recovery


def _kill_cluster_master(cluster: RedisClusterSet, key: str) -> Callable[[], None]:
    """SIGKILL the master serving ``key``; once its replica took over, start it again
    (empty: it rejoins as the new master's replica), as an operator would."""
    victim = cluster.master_of(key)

    def kill() -> None:
        victim.kill()
        deadline = time.monotonic() + 30
        while cluster.master_of(key) is victim:
            assert time.monotonic() < deadline, "the replica was never promoted"
            time.sleep(0.1)
        victim.start()

    return kill


def _kill_sentinel_master(sentinels: SentinelSet) -> Callable[[], None]:
    victim = sentinels.current_master()

    def kill() -> None:
        victim.kill()
        deadline = time.monotonic() + 30
        promoted = next(s for s in sentinels.servers if s is not victim)
        # Once every sentinel names the promoted replica and it says it is master, the
        # victim comes back as its replica, as an operator brings back a server without
        # persistence. Never as an empty master: when the promoted master then stalled
        # for a second on a loaded machine, the sentinels failed over back to the empty
        # one, and the promoted master, made its replica, was wiped by the sync (17-22
        # messages lost; reproduced by stopping the promoted master for 2.5 s).
        while not (sentinels.all_name(promoted) and promoted.role() == "master"):
            assert time.monotonic() < deadline, "the sentinels never promoted the replica"
            time.sleep(0.1)
        victim.start(replica_of=promoted)

    return kill


def _describe(
    servers: list[RedisServer], prefix: str, history: History, logs: Sequence[Path] = ()
) -> str:
    """What each server holds under ``prefix`` (roles, stream ids, pending entries,
    bookkeeping hashes), which ids were lost or unsure, and the end of each server's
    (and sentinel's) log: a failure's evidence, for a loss that shows only now and
    then under load."""
    lines = [f"lost: {sorted(history.lost())}", f"unsure: {sorted(history.unsure)}"]
    for log in [*(s.directory / "redis.log" for s in servers), *logs]:
        if log.exists():
            lines.append(f"{log}:")
            lines += log.read_text(errors="replace").splitlines()[-60:]
    for server in servers:
        client = server.client()
        try:
            lines.append(f"server {server.port}: {client.info('replication').get('role')}")
            for key in sorted(client.scan_iter(match=f"{prefix}*")):
                kind = client.type(key).decode()
                lines.append(f"  {key.decode()} ({kind})")
                if kind == "hash":
                    lines.append(f"    {client.hgetall(key)}")
                elif kind == "list":
                    lines.append(f"    {client.llen(key)} elements")
                elif kind == "stream":
                    bodies = [f.get(b"body", b"?").decode() for _, f in client.xrange(key)]
                    lines.append(f"    bodies: {bodies}")
                    for group in client.xinfo_groups(key):
                        lines.append(f"    group {group}")
                        pending = client.xpending_range(key, group["name"], "-", "+", 1000)
                        lines.append(f"    pending: {pending}")
        except redis.RedisError as exc:
            lines.append(f"  ({exc!r})")
        finally:
            client.close()
    return "\n".join(lines)


def _report(what: str, history: History, recovery: float) -> None:
    print(
        f"\n{what}: recovered in {recovery:.2f} s; {len(history.published)} published "
        f"({history.publish_errors} publish errors), {len(history.lost())} lost, "
        f"{history.duplicates()} duplicate deliveries, {len(history.acks_lost())} acks lost, "
        f"{history.ack_errors} ack errors"
    )


@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream"])
def test_cluster_master_killed_under_load(
    redis_cluster: RedisClusterSet, prefix: str, scheme: str
) -> None:
    topic = "busy"
    kill = _kill_cluster_master(redis_cluster, Keyspace(prefix).topic(topic))
    url = redis_cluster.url(scheme, prefix=prefix, replicas="1", replica_timeout="1")
    try:
        history, recovery = _run_under_failover(url, topic, kill)
    finally:
        redis_cluster.restart_dead()
    _report(f"cluster {scheme} replicas=1", history, recovery)
    assert not history.failures, history.failures
    assert not history.lost(), _describe(list(redis_cluster.nodes), prefix, history)
    assert not history.acks_lost(), f"acks lost: {sorted(history.acks_lost())[:10]}"
    assert recovery < 30


@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream"])
def test_sentinel_master_killed_under_load(
    redis_sentinel: SentinelSet, prefix: str, scheme: str
) -> None:
    topic = "busy"
    url = redis_sentinel.url(scheme, prefix=prefix, replicas="1", replica_timeout="1")
    try:
        history, recovery = _run_under_failover(url, topic, _kill_sentinel_master(redis_sentinel))
    finally:
        redis_sentinel.restart_dead()
    _report(f"sentinel {scheme} replicas=1", history, recovery)
    assert not history.failures, history.failures
    assert not history.lost(), _describe(
        redis_sentinel.servers,
        prefix,
        history,
        [s.config.parent / "sentinel.log" for s in redis_sentinel.sentinels],
    )
    assert not history.acks_lost(), f"acks lost: {sorted(history.acks_lost())[:10]}"
    assert recovery < 30


def test_resharding_a_busy_slot_while_consuming(
    redis_cluster: RedisClusterSet, prefix: str
) -> None:
    """The slot of a busy stream topic moves to another master (``redis-cli --cluster
    reshard``, keys migrated with MIGRATE while clients see ASK and MOVED): nothing is
    lost, the loop carries on."""
    topic = "moving"
    key = Keyspace(prefix).topic(topic)
    client = redis_cluster.client()
    try:
        slot = client.keyslot(key)
        source = client.get_node_from_key(key)
        assert source is not None
        target = next(n for n in client.get_primaries() if n.name != source.name)
        ids = {n.name: client.cluster_myid(n) for n in (source, target)}
    finally:
        client.close()

    def reshard() -> None:
        # Move just this slot: set it migrating/importing, migrate its keys, hand it over.
        admin_source = redis_cluster.node(int(source.port)).client()
        admin_target = redis_cluster.node(int(target.port)).client()
        try:
            admin_target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source.name])
            admin_source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target.name])
            while keys := admin_source.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                admin_source.execute_command(
                    "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys
                )
            for admin in (admin_target, admin_source):
                admin.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target.name])
        finally:
            admin_source.close()
            admin_target.close()

    url = redis_cluster.url("redis+stream", prefix=prefix)
    history, _ = _run_under_failover(url, topic, reshard)
    print(f"\nslot {slot} moved from {source.name} to {target.name}")
    _report("cluster redis+stream reshard", history, 0.0)
    assert not history.failures, history.failures
    assert not history.lost()
    redis_cluster.wait_healthy()
    # the CLI check agrees that every slot is served once
    check = subprocess.run(
        [find_redis_cli(), "--cluster", "check", f"127.0.0.1:{target.port}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "[OK] All 16384 slots covered." in check.stdout


def test_sharded_subscription_follows_a_failover(
    redis_cluster: RedisClusterSet, prefix: str
) -> None:
    """The master serving a shard channel is killed: the subscription resubscribes on
    the promoted replica, reports the gap, and receives what is published after."""
    url = redis_cluster.url("redis+pubsub", prefix=prefix)
    with brokerkit.connect(url) as broker:
        channel = broker.channel("news")  # type: ignore[attr-defined]
        kill = _kill_cluster_master(redis_cluster, channel)
        subscription = broker.subscribe("news")
        broker.publish("news", "before")
        first = subscription.receive(timeout=5)
        assert first is not None and first.body == "before"
        try:
            kill()
            deadline = time.monotonic() + 30
            got = None
            while got is None and time.monotonic() < deadline:
                broker.publish("news", "after")
                got = subscription.receive(timeout=0.5)
            assert got is not None and got.body == "after"
            assert broker.gaps(subscription)  # type: ignore[attr-defined]
        finally:
            redis_cluster.restart_dead()
