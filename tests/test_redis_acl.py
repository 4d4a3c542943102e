"""Least privilege: each Redis backend works under an ACL user limited to its key
prefix and the commands ``docs/security.md`` lists, and the lines tested are the
very lines in that page. Users are made with unique names and deleted after each test.

A command an ACL refuses is a PermissionDenied naming it, never a lost lease, and a
refused ``CLIENT SETNAME`` (the name is only for ``CLIENT LIST``) never stops a
subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis.list.plan import MOVE_BYTES
from brokerkit.exceptions import PermissionDenied
from tests.conftest import RedisTarget
from tests.redis_cluster import RedisClusterSet
from tests.redis_server import RedisServer

SECURITY_PAGE = Path(__file__).resolve().parent.parent / "docs" / "security.md"


def documented_acl(backend: str) -> list[str]:
    """The arguments of the ``ACL SETUSER brokerkit-<backend> ...`` line in docs/security.md."""
    for line in SECURITY_PAGE.read_text().splitlines():
        if not line.startswith("ACL SETUSER "):
            continue
        words = shlex.split(line)
        if words[:3] == ["ACL", "SETUSER", f"brokerkit-{backend}"]:
            return words[3:]
    raise AssertionError(f"docs/security.md has no ACL SETUSER line for brokerkit-{backend}")


MakeUser = Callable[..., str]


@pytest.fixture
def acl_url(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str
) -> Iterator[MakeUser]:
    """``acl_url(backend, drop=(), add=())``: a URL for a new ACL user made from the
    documented line for ``backend`` (under this test's prefix), less the rules in
    ``drop`` and plus those in ``add``; made on the session's Redis, or ``on`` a
    private server."""
    made: list[str] = []

    def make(
        backend: str,
        *,
        drop: tuple[str, ...] = (),
        add: tuple[str, ...] = (),
        on: RedisServer | None = None,
    ) -> str:
        user, password = f"bk-acl-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
        rules = [
            f">{password}" if rule == ">CHANGE-ME" else rule.replace("brokerkit:", f"{prefix}:")
            for rule in documented_acl(backend)
            if rule not in drop
        ]
        if on is not None:  # a private server of the test's own, gone with its users
            with contextlib.closing(on.client()) as client:
                client.execute_command("ACL", "SETUSER", user, *rules, *add)
            return f"redis+{backend}://{user}:{password}@127.0.0.1:{on.port}/0"
        redis_client.execute_command("ACL", "SETUSER", user, *rules, *add)
        made.append(user)
        host, port, db = redis_target.host, redis_target.port, redis_target.db
        return f"redis+{backend}://{user}:{password}@{host}:{port}/{db}"

    yield make
    if made:
        redis_client.execute_command("ACL", "DELUSER", *made)


@pytest.fixture
def connect(prefix: str) -> Iterator[Callable[..., brokerkit.Broker]]:
    brokers: list[brokerkit.Broker] = []

    def make(url: str, **options: object) -> brokerkit.Broker:
        broker = brokerkit.connect(url, prefix=prefix, **options)
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        broker.close()


def _receive(subscription: brokerkit.Subscription) -> brokerkit.Delivery:
    delivery = subscription.receive(timeout=5)
    assert delivery is not None
    return delivery


def _drain(subscription: brokerkit.Subscription, ids: set[str]) -> None:
    """Receive and ack until every message in ``ids`` came (polling, with a deadline)."""
    deadline = time.monotonic() + 30
    while ids:
        assert time.monotonic() < deadline, f"never delivered: {ids}"
        delivery = subscription.receive(timeout=1)
        if delivery is not None:
            ids.discard(delivery.id)
            delivery.ack()


@pytest.mark.parametrize("backend", ["list", "stream"])
def test_a_queue_backend_works_under_its_documented_acl_user(
    acl_url: MakeUser, connect: Callable[..., brokerkit.Broker], backend: str
) -> None:
    url = acl_url(backend)
    broker = connect(url, visibility_timeout=0.5, max_deliveries=5, maxlen=100)
    ids = [broker.publish("orders", "a"), *broker.publish_many("orders", ["b", "c"])]
    subscription = broker.subscribe("orders", prefetch=2)
    acked = _receive(subscription)
    acked.ack()
    _receive(subscription).nack(requeue=True)
    rejected = _receive(subscription)
    broker.extend(rejected)
    rejected.nack(requeue=False)
    _drain(subscription, set(ids) - {acked.id, rejected.id})
    dead = _receive(broker.subscribe(broker.dead_letter_topic("orders")))
    assert (dead.id, dead.headers["x-dead-letter-reason"]) == (rejected.id, "rejected")
    dead.ack()

    # a hung consumer's lease runs out, and recovery hands its message to another
    hung = connect(url, visibility_timeout=0.5)
    lost = broker.publish("orders", "d")
    held = _receive(hung.subscribe("orders"))
    assert held.id == lost
    hung._suspend_renewals()
    _drain(subscription, {lost})

    # delays: a delayed publish and a delayed retry, released by the scripts
    later = broker.publish("orders", "e", delay=0.2)
    assert broker.inspect("orders").scheduled == 1
    retried = _receive(subscription)
    assert retried.id == later
    retried.nack(delay=0.2, reason="retry later")
    again = _receive(subscription)
    assert (again.id, again.attempt) == (later, 2)
    again.ack()

    info = broker.inspect("orders")
    assert (info.in_flight, info.scheduled) == (0, 0)
    broker.publish("orders", "f", delay=60)
    assert broker.purge("orders") >= 1


def test_pubsub_works_under_its_documented_acl_user_with_a_pattern_rule(
    acl_url: MakeUser, connect: Callable[..., brokerkit.Broker]
) -> None:
    broker = connect(acl_url("pubsub"))
    plain = broker.subscribe("chat:room:1")
    pattern = broker.subscribe("chat:room:*", pattern=True)  # the documented &...{chat:room:*}
    deadline = time.monotonic() + 10
    while broker.publish_counted("chat:room:1", "hello").receivers < 2:
        assert time.monotonic() < deadline, "the subscriptions never started listening"
        time.sleep(0.05)
    assert _receive(plain).body == "hello"
    assert _receive(pattern).body == "hello"


def test_pubsub_inspect_works_under_its_documented_acl_user(
    acl_url: MakeUser, connect: Callable[..., brokerkit.Broker]
) -> None:
    """``inspect`` (and so ``brokerkit inspect``, ``brokerkit topics --topic`` and the
    exporter) counts subscribers and the server's pattern subscriptions."""
    broker = connect(acl_url("pubsub"))
    subscription = broker.subscribe("chat:room:1")
    deadline = time.monotonic() + 10
    while broker.inspect("chat:room:1").details["subscribers"] < 1:
        assert time.monotonic() < deadline, "the subscription never started listening"
        subscription.receive(timeout=0.05)  # raises if the listener died
    assert broker.inspect("chat:room:1").details["server_pattern_subscriptions"] >= 0
    assert broker.purge("chat:room:1") == 0
    with pytest.raises(brokerkit.Unsupported):  # not a PermissionDenied
        broker.topics()


@pytest.mark.parametrize("backend", ["list", "stream"])
def test_topics_are_listed_under_the_documented_acl_user_with_scan(
    acl_url: MakeUser, connect: Callable[..., brokerkit.Broker], backend: str
) -> None:
    """docs/security.md: listing topics needs ``+scan`` on top of the line."""
    broker = connect(acl_url(backend, add=("+scan",)))
    broker.publish("orders", "a")
    broker.publish("later", "b", delay=60)
    assert broker.topics() == ["later", "orders"]


@pytest.mark.parametrize("backend", ["list", "stream"])
def test_a_queue_backend_waits_for_its_replica_under_its_documented_acl_user(
    acl_url: MakeUser, prefix: str, backend: str
) -> None:
    """With ``replicas=1`` every publish and settlement is followed by ``WAIT``,
    which the documented line allows: nothing is refused after it was stored."""
    with RedisServer() as master:
        replica = RedisServer().start(replica_of=master)
        url = acl_url(backend, on=master) + "?replicas=1&replica_timeout=30"
        options = {"prefix": prefix, "visibility_timeout": 5, "max_deliveries": 5}
        try:
            with brokerkit.connect(url, **options) as broker:
                ids = [broker.publish("orders", "a"), *broker.publish_many("orders", ["b", "c"])]
                subscription = broker.subscribe("orders", prefetch=3)
                first, second, third = (_receive(subscription) for _ in ids)
                first.ack()
                second.nack(requeue=True)
                third.nack(requeue=False)
                again = _receive(subscription)
                assert (again.id, again.attempt) == (second.id, 2)
                again.ack()
                dead = _receive(broker.subscribe(broker.dead_letter_topic("orders")))
                assert dead.id == third.id
                dead.ack()
                assert broker.inspect("orders").in_flight == 0
                broker.publish("orders", "d", delay=60)
                assert broker.purge("orders") >= 1
        finally:
            replica.stop()


def test_a_pattern_without_its_literal_channel_rule_is_refused(
    acl_url: MakeUser, connect: Callable[..., brokerkit.Broker]
) -> None:
    broker = connect(acl_url("pubsub"))
    # Redis 7 words it "no permissions", Redis 8 "No permissions"
    with pytest.raises(brokerkit.BrokerError, match=r"(?i)no permissions"):
        broker.subscribe("news:*", pattern=True).receive(timeout=5)


def test_a_wrong_password_is_refused_without_showing_it(
    acl_url: MakeUser, connect: Callable[..., brokerkit.Broker]
) -> None:
    url = acl_url("list")
    password = re.search(r":([0-9a-f]{32})@", url)
    assert password is not None
    wrong = url.replace(password.group(1), "0" * 32)
    broker = connect(wrong, reconnect_timeout=0)
    with pytest.raises(brokerkit.ConnectionFailed) as excinfo:
        broker.publish("orders", "x")
    assert password.group(1) not in str(excinfo.value)
    assert "0" * 32 not in str(excinfo.value)


def test_a_command_denied_inside_a_script_is_a_permission_error_not_a_lost_lease(
    acl_url: MakeUser, connect: Callable[..., brokerkit.Broker]
) -> None:
    broker = connect(acl_url("stream", drop=("+xpending",)))
    broker.publish("orders", "x")
    delivery = _receive(broker.subscribe("orders"))
    with pytest.raises(PermissionDenied, match=r"(?i)xpending"):
        delivery.ack()


def test_a_denied_blmove_never_strands_what_the_lease_script_took(
    acl_url: MakeUser, connect: Callable[..., brokerkit.Broker]
) -> None:
    """A waiting redis+list consumer sends BLMOVE and its lease script together; the
    script runs even when the ACL refuses the BLMOVE, and what it leased is handed out,
    not left unseen until its lease runs out (with an attempt counted)."""
    broker = connect(acl_url("list", drop=("+blmove",)))
    subscription = broker.subscribe("orders")
    assert subscription.receive(timeout=0) is None  # found nothing: it waits next time
    broker.publish("orders", "x")
    delivery = subscription.receive(timeout=1)
    assert delivery is not None and (delivery.body, delivery.attempt) == ("x", 1)
    delivery.ack()
    with pytest.raises(PermissionDenied, match=r"(?i)blmove"):
        subscription.receive(timeout=1)  # nothing leased: the refusal is reported


@pytest.mark.parametrize("drop", ["", "+renamenx", "+multi", "+exec"])
def test_big_elements_are_fetched_by_moves_or_without_them_under_an_acl(
    acl_url: MakeUser, connect: Callable[..., brokerkit.Broker], drop: str
) -> None:
    """With the documented line a consumer of big elements fetches them by moves. An
    ACL without ``+renamenx`` or ``+exec`` refuses the transaction before any of it
    runs, one without ``+multi`` runs each command on its own: each time the consumer
    loses nothing and leases by the script alone from then on, a woken one (what waits
    behind the element it handed out) and one that found them waiting."""
    rename = not drop
    broker = connect(acl_url("list", drop=(drop,) if drop else ()))
    bodies = [b"%03d" % i + b"x" * MOVE_BYTES for i in range(12)]
    for woken in (True, False):
        subscription = broker.subscribe("orders", prefetch=4)
        if woken:
            assert subscription.receive(timeout=0) is None  # it waits in BLMOVE next
        broker.publish_many("orders", bodies)
        got = [_receive(subscription) for _ in range(12)]
        assert [(d.payload, d.attempt) for d in got] == [(b, 1) for b in bodies]
        assert subscription.state.moves_refused is not rename  # type: ignore[attr-defined]
        broker.ack(*got)
        subscription.close()
        assert broker.inspect("orders").in_flight == 0


def test_a_transaction_of_moves_run_without_multi_overwrites_no_queue_pushed_meanwhile(
    acl_url: MakeUser,
    connect: Callable[..., brokerkit.Broker],
    redis_client: redis.Redis,
    prefix: str,
) -> None:
    """A server that refuses MULTI runs each command of the transaction on its own; a
    producer that pushes between the script (which lent the queue) and the RENAMENX
    makes a new queue, which the RENAMENX leaves alone, and the consumer has the script
    give back what stayed under its moving key at once: nothing lost, the order kept.
    (The commands are sent one at a time here, so that the push comes between them.)"""
    broker = connect(acl_url("list", drop=("+multi",)))
    bodies = [b"%03d" % i + b"x" * MOVE_BYTES for i in range(12)]
    broker.publish_many("orders", bodies)
    subscription = broker.subscribe("orders", prefetch=4)
    got = [_receive(subscription) for _ in range(4)]  # sized by the script
    reader = subscription.state.reader  # type: ignore[attr-defined]
    run = reader.execute_many

    def one_at_a_time(*commands: tuple[Any, ...], packed: Any = None) -> list[Any]:
        replies = []
        for command in commands:
            replies += run(command)
            if command[0] == "EVALSHA":
                broker.publish("orders", b"pushed meanwhile")
        return replies

    reader.execute_many = one_at_a_time
    got += [_receive(subscription) for _ in range(4)]  # the transaction, run alone
    reader.execute_many = run
    assert subscription.state.moves_refused  # type: ignore[attr-defined]
    got += [_receive(subscription) for _ in range(5)]
    assert [d.payload for d in got] == [*bodies, b"pushed meanwhile"]
    broker.ack(*got)
    assert not redis_client.keys(f"{prefix}:*moving*")


def test_a_denied_client_setname_does_not_stop_a_subscription(
    acl_url: MakeUser, connect: Callable[..., brokerkit.Broker]
) -> None:
    broker = connect(acl_url("pubsub", drop=("+client|setname",)))
    subscription = broker.subscribe("chat:room:1")
    deadline = time.monotonic() + 10
    while broker.publish_counted("chat:room:1", "hello").receivers < 1:
        assert time.monotonic() < deadline, "the subscription never started listening"
        subscription.receive(timeout=0.05)  # raises if the listener died
    assert _receive(subscription).body == "hello"


def test_a_refused_command_is_a_permission_error_naming_it(
    acl_url: MakeUser, connect: Callable[..., brokerkit.Broker]
) -> None:
    broker = connect(acl_url("stream", add=("-xadd",)))
    with pytest.raises(PermissionDenied, match="XADD") as refused:
        broker.publish("orders", {"n": 1})
    assert refused.value.command == "XADD"
    assert "CHANGE-ME" not in str(refused.value)


@pytest.fixture
def cluster_acl_url(redis_cluster: RedisClusterSet, prefix: str) -> Iterator[MakeUser]:
    """``cluster_acl_url(backend, drop=(), add=())``: a cluster URL for a new ACL user
    made on every node of the session's cluster (replicas too: users are per node) from
    the documented ``brokerkit-<backend>-cluster`` line, under this test's prefix."""
    made: list[str] = []

    def make(backend: str, *, drop: tuple[str, ...] = (), add: tuple[str, ...] = ()) -> str:
        user, password = f"bk-acl-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
        rules = [
            f">{password}" if rule == ">CHANGE-ME" else rule.replace("brokerkit:", f"{prefix}:")
            for rule in documented_acl(f"{backend}-cluster")
            if rule not in drop
        ]
        for node in redis_cluster.nodes:
            with contextlib.closing(node.client()) as client:
                client.execute_command("ACL", "SETUSER", user, *rules, *add)
        made.append(user)
        seeds = ",".join(f"127.0.0.1:{node.port}" for node in redis_cluster.nodes[:3])
        return f"redis+{backend}://{user}:{password}@{seeds}/0?cluster=true"

    yield make
    for node in redis_cluster.nodes:
        if made and node.process is not None and node.process.poll() is None:
            with contextlib.closing(node.client()) as client:
                client.execute_command("ACL", "DELUSER", *made)


@pytest.mark.parametrize("backend", ["list", "stream"])
def test_a_queue_backend_works_on_a_cluster_under_its_documented_acl_user(
    cluster_acl_url: MakeUser, connect: Callable[..., brokerkit.Broker], backend: str
) -> None:
    """The documented cluster line: the cluster client's start (``CLUSTER SLOTS``,
    ``COMMAND``), publishes, leases, settlements, dead letters, delays, inspect and
    purge, on topics spread over the masters."""
    broker = connect(cluster_acl_url(backend), visibility_timeout=0.5, max_deliveries=5)
    for topic in ("orders", "invoices", "refunds"):
        ids = [broker.publish(topic, "a"), *broker.publish_many(topic, ["b", "c"])]
        subscription = broker.subscribe(topic, prefetch=2)
        acked = _receive(subscription)
        acked.ack()
        rejected = _receive(subscription)
        rejected.nack(requeue=False)
        _drain(subscription, set(ids) - {acked.id, rejected.id})
        dead = _receive(broker.subscribe(broker.dead_letter_topic(topic)))
        assert dead.id == rejected.id
        dead.ack()
        later = broker.publish(topic, "d", delay=0.2)
        retried = _receive(subscription)
        assert retried.id == later
        retried.nack(delay=0.2)
        again = _receive(subscription)
        assert (again.id, again.attempt) == (later, 2)
        again.ack()
        assert broker.inspect(topic).in_flight == 0
        broker.publish(topic, "e", delay=60)
        assert broker.purge(topic) >= 1


def test_pubsub_works_on_a_cluster_under_its_documented_acl_user(
    cluster_acl_url: MakeUser, connect: Callable[..., brokerkit.Broker]
) -> None:
    broker = connect(cluster_acl_url("pubsub"))
    subscription = broker.subscribe("chat:room:1")
    deadline = time.monotonic() + 10
    while broker.publish_counted("chat:room:1", "hello").receivers < 1:
        assert time.monotonic() < deadline, "the subscription never started listening"
        subscription.receive(timeout=0.05)  # raises if the listener died
    assert _receive(subscription).body == "hello"
    assert broker.inspect("chat:room:1").details["subscribers"] >= 1


@pytest.mark.parametrize(
    ("drop", "command"), [("+cluster|slots", "CLUSTER|SLOTS"), ("+command", "COMMAND")]
)
def test_a_cluster_start_command_refused_is_a_permission_error_naming_it(
    cluster_acl_url: MakeUser, prefix: str, drop: str, command: str
) -> None:
    """redis-py words a refused ``CLUSTER SLOTS`` "Cluster mode is not enabled on this
    node" (a ConnectionFailed said so), and its sync client's refused ``COMMAND`` was
    redis-py's own NoPermissionError: both are PermissionDenied naming the command,
    from the sync and the asyncio ``connect()`` alike."""
    url = cluster_acl_url("stream", drop=(drop,))
    with pytest.raises(PermissionDenied) as refused:
        brokerkit.connect(url, prefix=prefix).close()  # the sync client starts at once
    assert refused.value.command == command
    assert "Cluster mode is not enabled" not in str(refused.value)

    async def main() -> None:
        async with brokerkit.aio.connect(url, prefix=prefix) as broker:
            await broker.publish("orders", "x")  # its client starts at its first command

    with pytest.raises(PermissionDenied) as refused:
        asyncio.run(main())
    assert refused.value.command == command
