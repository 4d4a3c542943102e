"""redis+stream recovery against a real redis-server: leases, reclaiming,
crashed consumers, connection loss and server restarts."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import brokerkit
from brokerkit.backends.redis.stream import RedisStreamBroker
from tests.conftest import RedisTarget
from tests.redis_server import RedisServer

Make = Callable[..., RedisStreamBroker]

#: Slack on top of a visibility timeout for a recovery to be seen (slow CI machines).
GRACE = 5.0


@pytest.fixture
def make(redis_broker: Callable[..., Any]) -> Make:
    """``make(**options)``: a new redis+stream broker under this test's prefix."""
    return functools.partial(redis_broker, "redis+stream")


def test_a_handler_three_times_the_visibility_timeout_is_not_redelivered(make: Make) -> None:
    vt = 0.5
    worker, other = make(visibility_timeout=vt), make(visibility_timeout=vt)
    worker.publish("jobs", "slow")
    delivery = worker.subscribe("jobs").receive(timeout=1)
    assert delivery is not None
    finished = threading.Event()
    outcome: list[BaseException | None] = []

    def handler() -> None:
        finished.wait(3 * vt)  # the slow work; the heartbeat renews the lease meanwhile
        try:
            delivery.ack()
            outcome.append(None)
        except BaseException as exc:  # reported below
            outcome.append(exc)

    thread = threading.Thread(target=handler)
    thread.start()
    stolen = other.subscribe("jobs").receive(timeout=3 * vt)
    thread.join()
    assert stolen is None, "a live consumer's delivery was handed to another consumer"
    assert outcome == [None]


def test_four_consumers_reclaiming_the_same_idle_entries_get_disjoint_sets(
    make: Make, redis_client: redis.Redis
) -> None:
    vt = 0.3
    publisher = make()
    publisher.create_group("jobs", "workers")
    ids = publisher.publish_many("jobs", range(60))
    # A consumer takes every entry and dies: no heartbeat, no ack.
    key = publisher.stream_key("jobs")
    taken = redis_client.xreadgroup("workers", "dead", {key: ">"}, count=100)
    assert len(taken[0][1]) == 60
    brokers = [make(visibility_timeout=vt) for _ in range(4)]
    start = threading.Barrier(4)
    got: list[list[brokerkit.Delivery]] = [[] for _ in brokers]
    deadline = time.monotonic() + vt + GRACE

    def reclaim(index: int) -> None:
        subscription = brokers[index].subscribe("jobs", group="workers", prefetch=4)
        start.wait()
        while time.monotonic() < deadline:
            if sum(len(g) for g in got) >= len(ids):
                break
            delivery = subscription.receive(timeout=0.2)
            if delivery is not None:
                got[index].append(delivery)

    threads = [threading.Thread(target=reclaim, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sets = [{d.id for d in deliveries} for deliveries in got]
    assert sum(len(s) for s in sets) == sum(len(g) for g in got), "an entry was delivered twice"
    for i in range(4):
        for j in range(i + 1, 4):
            assert not sets[i] & sets[j]
    assert set().union(*sets) == set(ids)
    assert all(d.attempt == 2 for deliveries in got for d in deliveries)
    for broker, deliveries in zip(brokers, got, strict=True):
        if deliveries:
            broker.ack(*deliveries)
    assert publisher.inspect("jobs").in_flight == 0


def test_an_expired_lease_is_reclaimed_while_new_entries_keep_coming(
    make: Make, redis_client: redis.Redis
) -> None:
    vt = 0.4
    broker = make(visibility_timeout=vt)
    broker.create_group("jobs", "workers")
    [lost] = broker.publish_many("jobs", ["lost"])
    # A consumer takes the entry and dies: no heartbeat, no ack.
    assert redis_client.xreadgroup("workers", "dead", {broker.stream_key("jobs"): ">"}, count=1)
    stop = threading.Event()

    def publish() -> None:  # keeps every read of the live consumer non-empty
        while not stop.is_set():
            broker.publish_many("jobs", ["new"] * 50)

    publisher = threading.Thread(target=publish)
    publisher.start()
    try:
        subscription = broker.subscribe("jobs", group="workers", prefetch=10)
        deadline = time.monotonic() + 1.25 * vt + GRACE
        found = None
        while found is None and time.monotonic() < deadline:
            delivery = subscription.receive(timeout=1)
            if delivery is not None:
                delivery.ack()
                if delivery.id == lost:
                    found = delivery
    finally:
        stop.set()
        publisher.join()
    assert found is not None, "the dead consumer's entry was never reclaimed"
    assert found.attempt == 2


_CONSUMER = """
import sys, threading, brokerkit
broker = brokerkit.connect(sys.argv[1], visibility_timeout=float(sys.argv[2]))
subscription = broker.subscribe("jobs", prefetch=5)
held = []  # mid-processing: a delivery let go of unsettled would come back
for _ in range(5):
    held.append(subscription.receive(timeout=10))
    print(held[-1].id, flush=True)
threading.Event().wait()  # forever
"""


def test_sigkill_mid_processing_is_recovered_within_the_visibility_timeout(
    make: Make, redis_target: RedisTarget, prefix: str
) -> None:
    vt = 1.0
    survivor = make(visibility_timeout=vt)
    ids = survivor.publish_many("jobs", [f"job-{i}" for i in range(5)])
    url = redis_target.url("redis+stream", prefix=prefix)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    process = subprocess.Popen(
        [sys.executable, "-c", _CONSUMER, url, str(vt)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        held = [process.stdout.readline().strip() for _ in ids]
        assert sorted(held) == sorted(ids)
        # The consumer is alive and renewing: nothing comes back meanwhile.
        subscription = survivor.subscribe("jobs", prefetch=5)
        assert subscription.receive(timeout=2 * vt) is None
        os.kill(process.pid, signal.SIGKILL)
        killed_at = time.monotonic()
    finally:
        process.kill()
        process.wait()
    recovered = []
    while len(recovered) < len(ids):
        delivery = subscription.receive(timeout=vt + GRACE)
        assert delivery is not None, f"only {len(recovered)} of {len(ids)} came back"
        recovered.append(delivery)
    assert time.monotonic() - killed_at < vt + GRACE
    assert sorted(d.id for d in recovered) == sorted(ids)
    assert all(d.attempt == 2 for d in recovered)
    survivor.ack(*recovered)


def test_closing_a_consumer_without_settling_hands_its_deliveries_back(make: Make) -> None:
    vt = 0.3
    crashed, survivor = make(visibility_timeout=vt), make(visibility_timeout=vt)
    ids = crashed.publish_many("jobs", ["a", "b", "c"])
    subscription = crashed.subscribe("jobs", prefetch=3)
    returned = subscription.receive(timeout=1)  # one returned, two still buffered
    assert returned is not None
    crashed.close()  # the buffered two are requeued at once; the returned one expires
    again = survivor.subscribe("jobs", prefetch=3)
    got = []
    while len(got) < 3:
        delivery = again.receive(timeout=vt + GRACE)
        assert delivery is not None
        got.append(delivery)
    assert sorted(d.id for d in got) == sorted(ids)
    survivor.ack(*got)


@pytest.fixture
def persistent_server() -> Iterator[RedisServer]:
    with RedisServer(appendonly=True) as server:
        yield server


def test_consume_survives_a_server_restart_and_recovers_unacked_entries(
    persistent_server: RedisServer, prefix: str
) -> None:
    vt = 0.5
    url = persistent_server.url("redis+stream") + f"?prefix={prefix}"
    with (
        brokerkit.connect(url, visibility_timeout=vt) as before,
        brokerkit.connect(url, visibility_timeout=vt) as after,
    ):
        ids = before.publish_many("jobs", ["a", "b"])
        held = before.subscribe("jobs").receive(timeout=1)
        assert held is not None and held.id == ids[0]
        consumer = after.subscribe("jobs")
        persistent_server.restart()
        before.close()  # the consumer that held "a" is gone; its entry must come back
        got = {}
        deadline = time.monotonic() + vt + GRACE
        while len(got) < 2 and time.monotonic() < deadline:
            delivery = consumer.receive(timeout=1)
            if delivery is not None:
                got[delivery.id] = delivery
        assert sorted(got) == sorted(ids)
        assert got[ids[0]].attempt == 2
        after.ack(*got.values())
        assert after.publish("jobs", "c")
        fresh = consumer.receive(timeout=1)
        assert fresh is not None and fresh.body == "c"
        fresh.ack()


def test_a_restart_that_lost_the_stream_recreates_the_group(
    redis_server: RedisServer, prefix: str
) -> None:
    url = redis_server.url("redis+stream") + f"?prefix={prefix}"
    with brokerkit.connect(url) as broker:
        subscription = broker.subscribe("jobs", group="g")
        broker.publish("jobs", "before")
        first = subscription.receive(timeout=1)
        assert first is not None
        redis_server.restart()  # no persistence: stream and group are gone
        with pytest.raises(brokerkit.StaleDelivery):
            first.ack()
        broker.publish("jobs", "after")
        second = subscription.receive(timeout=5)
        assert second is not None and second.body == "after"
        second.ack()
        assert [g.name for g in broker.inspect("jobs").groups] == ["g"]


def test_a_blocked_receive_rides_out_a_server_restart(
    redis_server: RedisServer, prefix: str
) -> None:
    url = redis_server.url("redis+stream") + f"?prefix={prefix}"
    with brokerkit.connect(url) as consumer, brokerkit.connect(url) as producer:
        subscription = consumer.subscribe("jobs")
        results: list[brokerkit.Delivery | None] = []
        waiting = threading.Event()

        def receive() -> None:
            waiting.set()
            results.append(subscription.receive(timeout=GRACE + 5))

        thread = threading.Thread(target=receive)
        thread.start()
        waiting.wait()
        redis_server.restart()
        producer.publish("jobs", "after the restart")
        thread.join()
        assert results and results[0] is not None
        assert results[0].body == "after the restart"
        results[0].ack()
