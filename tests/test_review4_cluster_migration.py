"""A slot half-migrated (MIGRATING on its master, IMPORTING on another, one of a
topic's keys already moved): a multi-key command is refused with ``TRYAGAIN`` until
the migration ends, redis-py gives up after its own 16 tries ("TTL exhausted"), and
brokerkit retries on for up to ``reconnect_timeout`` (docs/deployments.md) instead of
failing at once; once that time is up, the call fails with ``ConnectionFailed``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis._keys import Keyspace
from brokerkit.exceptions import ConnectionFailed
from tests.redis_cluster import RedisClusterSet
from tests.waiting import wait_until

#: redis-py's cluster client tries a command this often before "TTL exhausted".
REDIS_PY_TRIES = 16

OPERATIONS = ["ack", "receive", "inspect", "publish_delayed"]


class HalfMigration:
    """The slot of ``key`` set migrating from its master to another, ``key`` alone
    moved; :meth:`finish` moves the rest and hands the slot over."""

    def __init__(self, cluster: RedisClusterSet, key: str) -> None:
        client = cluster.client()
        try:
            self.slot = client.keyslot(key)
            source = client.get_node_from_key(key)
            assert source is not None
            target = next(n for n in client.get_primaries() if n.name != source.name)
            self.target_port = int(target.port)
            ids = {n.name: client.cluster_myid(n) for n in (source, target)}
            self.source_id, self.target_id = ids[source.name], ids[target.name]
        finally:
            client.close()
        self.cluster = cluster
        self.source = cluster.node(int(source.port)).client()
        self.target = cluster.node(self.target_port).client()
        self.key = key
        self.finished = False

    def start(self) -> None:
        self.target.execute_command("CLUSTER", "SETSLOT", self.slot, "IMPORTING", self.source_id)
        self.source.execute_command("CLUSTER", "SETSLOT", self.slot, "MIGRATING", self.target_id)
        self.source.execute_command(
            "MIGRATE", "127.0.0.1", self.target_port, "", 0, 5000, "KEYS", self.key
        )

    def refusals(self) -> int:
        """How many commands the two nodes have answered with TRYAGAIN so far."""
        total = 0
        for node in (self.source, self.target):
            stats = node.info("errorstats")
            total += int(stats.get("errorstat_TRYAGAIN", {}).get("count", 0))
        return total

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        while keys := self.source.execute_command("CLUSTER", "GETKEYSINSLOT", self.slot, 100):
            self.source.execute_command(
                "MIGRATE", "127.0.0.1", self.target_port, "", 0, 5000, "KEYS", *keys
            )
        for node in self.cluster.masters():
            admin = node.client()
            try:
                admin.execute_command("CLUSTER", "SETSLOT", self.slot, "NODE", self.target_id)
            finally:
                admin.close()
        self.cluster.wait_healthy()

    def close(self) -> None:
        self.finish()
        self.source.close()
        self.target.close()


@pytest.fixture
def half_migration(redis_cluster: RedisClusterSet) -> Iterator[Callable[[str], HalfMigration]]:
    made: list[HalfMigration] = []

    def factory(key: str) -> HalfMigration:
        made.append(HalfMigration(redis_cluster, key))
        return made[-1]

    yield factory
    for migration in made:
        migration.close()


def _sync_call(url: str, topic: str, operation: str) -> Callable[[], Callable[[], Any]]:
    """Set ``topic`` up (two messages, one received), then return the ``operation`` to
    run during the migration; the broker is closed by the caller's ``broker_box``."""

    def prepare() -> Callable[[], Any]:
        broker = brokerkit.connect(url)
        _opened.append(broker)
        broker.publish(topic, 1)
        broker.publish(topic, 2)
        subscription = broker.subscribe(topic)
        delivery = subscription.receive(timeout=10)
        assert delivery is not None
        return {
            "ack": delivery.ack,
            "receive": lambda: subscription.receive(timeout=1),
            "inspect": lambda: broker.inspect(topic).length,
            "publish_delayed": lambda: broker.publish(topic, 3, delay=0.5),
        }[operation]

    return prepare


_opened: list[Any] = []


def _async_call(url: str, topic: str, operation: str) -> Callable[[], Callable[[], Any]]:
    """As :func:`_sync_call`, on an asyncio broker run by a loop of its own thread."""
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()

    def run(coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    def prepare() -> Callable[[], Any]:
        async def set_up() -> Callable[[], Any]:
            broker = await brokerkit.aio.connect(url)
            _opened.append((broker, loop, runner, run))
            await broker.publish(topic, 1)
            await broker.publish(topic, 2)
            subscription = await broker.subscribe(topic)
            delivery = await subscription.receive(timeout=10)
            assert delivery is not None
            return {
                "ack": delivery.ack,
                "receive": lambda: subscription.receive(timeout=1),
                "inspect": lambda: broker.inspect(topic),
                "publish_delayed": lambda: broker.publish(topic, 3, delay=0.5),
            }[operation]

        call = run(set_up())
        return lambda: run(call())

    return prepare


@pytest.fixture(autouse=True)
def _close_brokers() -> Iterator[None]:
    yield
    while _opened:
        opened = _opened.pop()
        if isinstance(opened, tuple):
            broker, loop, runner, run = opened
            run(broker.close())
            loop.call_soon_threadsafe(loop.stop)
            runner.join(10)
            loop.close()
        else:
            opened.close()


def _in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream"])
def test_a_call_during_a_slot_migration_waits_for_it(
    redis_cluster: RedisClusterSet,
    half_migration: Callable[[str], HalfMigration],
    prefix: str,
    scheme: str,
    operation: str,
    mode: str,
) -> None:
    topic = "migrating"
    url = redis_cluster.url(scheme, prefix=prefix, reconnect_timeout="60")
    make = _sync_call if mode == "sync" else _async_call
    call = make(url, topic, operation)()
    migration = half_migration(Keyspace(prefix).topic(topic))
    before = migration.refusals()
    migration.start()
    thread, outcome = _in_thread(call)
    # Refused more often than redis-py retries by itself: the call is brokerkit's to
    # retry now (or it has ended, which the assertions below judge).
    wait_until(
        lambda: migration.refusals() > before + REDIS_PY_TRIES or not thread.is_alive(),
        "more refusals than redis-py retries by itself (or the call's end)",
        within=30.0,
    )
    migration.finish()
    thread.join(60)
    assert not thread.is_alive()
    assert "error" not in outcome, repr(outcome.get("error"))


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream"])
def test_a_migration_that_never_ends_is_a_connection_failure(
    redis_cluster: RedisClusterSet,
    half_migration: Callable[[str], HalfMigration],
    prefix: str,
    scheme: str,
    mode: str,
) -> None:
    topic = "stuck"
    url = redis_cluster.url(scheme, prefix=prefix, reconnect_timeout="1")
    make = _sync_call if mode == "sync" else _async_call
    call = make(url, topic, "publish_delayed")()
    migration = half_migration(Keyspace(prefix).topic(topic))
    migration.start()
    with pytest.raises(ConnectionFailed, match="topology") as raised:
        call()
    assert isinstance(raised.value.__cause__, redis.exceptions.ClusterError)
