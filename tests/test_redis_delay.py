"""Delays held by Redis, against a real redis-server: many delayed messages come out in
due order and none early; delayed retries survive the SIGKILL of the consumer that
nacked them and reach another consumer on time; raw elements stay raw; the keys
that hold them are the topic's own."""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

import brokerkit
from tests.conftest import RedisTarget

SCHEMES = ["redis+list", "redis+stream"]

#: The clocks of this process and of Redis (one machine) agree to well within this;
#: the server rounds due times up to the millisecond.
SLACK = 0.005
#: How late a due message may come out: a consumer that did not nack it finds it
#: within its delay_poll_interval (0.5 s by default), plus scheduling on a busy machine.
LATE = 1.5
#: Due times are kept to the millisecond, rounded up.
MS = 0.002

#: A consumer process: nacks ``count`` deliveries of "jobs" with ``delay``, printing
#: each id and the wall-clock times just before its nack was called and just after it
#: returned (the retry's due time is counted from a moment between the two), then
#: SIGKILLs itself with the retries still held by the broker.
NACKER = """
import os, signal, sys, time, brokerkit
url, count, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
with brokerkit.connect(url) as broker:
    subscription = broker.subscribe("jobs", group="workers")
    for _ in range(count):
        delivery = subscription.receive(timeout=10)
        before = time.time()
        delivery.nack(delay=delay)
        print(delivery.id, before, time.time(), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_thousand_random_delays_come_out_in_due_order_none_early(
    redis_broker: Callable[..., Any], scheme: str
) -> None:
    broker: brokerkit.Broker = redis_broker(scheme)
    subscription = broker.subscribe("jobs", prefetch=10)
    rng = random.Random(14)
    due: dict[str, tuple[float, float]] = {}
    for n in range(1000):
        delay = rng.uniform(0, 2)
        before = time.time()
        message_id = broker.publish("jobs", n, delay=delay)
        due[message_id] = (before + delay, time.time() + delay)
    got: list[tuple[str, float]] = []
    # id -> when the receive that returned it was called: a message cannot come out
    # before it is asked for (the first ones fall due while the loop above still
    # publishes, which took over 2 s on a loaded machine).
    asked: dict[str, float] = {}
    while len(got) < len(due):
        asking = time.time()
        delivery = subscription.receive(timeout=5)
        assert delivery is not None, f"only {len(got)} of {len(due)} came out"
        got.append((delivery.id, time.time()))
        asked[delivery.id] = asking
        delivery.ack()
    early = [(i, due[i][0] - at) for i, at in got if at < due[i][0] - SLACK]
    assert not early, f"{len(early)} came out early, the first by {early[0][1]:.3f}s"
    # The broker keeps due times to the millisecond (rounded up): two messages due
    # within one or two milliseconds of each other may come out either way;
    # otherwise the order is the due order.
    swapped = [(a, b) for (a, _), (b, _) in itertools.pairwise(got) if due[a][0] > due[b][1] + MS]
    assert not swapped, f"{len(swapped)} pairs out of due order"
    # Late: after it was both due and asked for.
    late = max(at - max(due[i][1], asked[i]) for i, at in got)
    assert late < LATE, f"one came out {late:.3f}s after it was due and asked for"
    assert broker.inspect("jobs").scheduled == 0


@pytest.mark.parametrize("scheme", SCHEMES)
def test_delayed_retries_survive_the_sigkill_of_the_consumer_that_nacked_them(
    redis_broker: Callable[..., Any], redis_target: RedisTarget, prefix: str, scheme: str
) -> None:
    broker: brokerkit.Broker = redis_broker(scheme)
    survivor = broker.subscribe("jobs", group="workers")  # the group exists before publishing
    ids = broker.publish_many("jobs", ["a", "b", "c"])
    delay = 2.0
    nacker = subprocess.run(
        [sys.executable, "-c", NACKER, redis_target.url(scheme, prefix=prefix), "3", str(delay)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
        timeout=60,
    )
    assert nacker.returncode == -9, nacker.stderr
    # id -> (before its nack was called, after it returned): the process can be
    # descheduled between the nack and the clock reading after it, so "not early" is
    # judged from the first and "not late" from the second.
    nacked = {
        i: (float(before), float(after))
        for i, before, after in (line.split() for line in nacker.stdout.splitlines())
    }
    assert sorted(nacked) == sorted(ids)
    assert broker.inspect("jobs").scheduled == 3
    for _ in ids:
        delivery = survivor.receive(timeout=delay + 5)
        arrived = time.time()
        assert delivery is not None, "a delayed retry was lost with the consumer that nacked it"
        assert delivery.attempt == 2
        nack_called, nack_returned = nacked[delivery.id]
        assert arrived >= nack_called + delay - SLACK, (
            f"{delivery.body} came {nack_called + delay - arrived:.3f}s early"
        )
        assert arrived <= nack_returned + delay + LATE, (
            f"{delivery.body} came {arrived - nack_returned - delay:.3f}s late"
        )
        delivery.ack()
    assert survivor.receive(timeout=0.2) is None


def test_a_raw_element_stays_raw_through_a_delayed_retry(
    redis_broker: Callable[..., Any], redis_client: redis.Redis
) -> None:
    broker: brokerkit.Broker = redis_broker("redis+list")
    queue = broker.inspect("jobs").details["queue_key"]
    redis_client.lpush(queue, b'{"order": 7}')
    subscription = broker.subscribe("jobs")
    first = subscription.receive(timeout=5)
    assert first is not None and first.body == {"order": 7}
    first.nack(delay=0.2)
    scheduled = broker.inspect("jobs").details["scheduled_key"]
    [member] = redis_client.zrange(scheduled, 0, -1)
    assert isinstance(member, bytes) and member.endswith(b'\n{"order": 7}'), member  # as it was
    again = subscription.receive(timeout=5)
    assert again is not None and (again.id, again.attempt) == (first.id, 2)
    again.nack(requeue=True)  # an immediate requeue: the element in the queue is raw
    assert redis_client.lrange(queue, 0, -1) == [b'{"order": 7}']
    third = subscription.receive(timeout=5)
    assert third is not None and third.attempt == 3
    third.ack()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_purge_drops_the_delayed_publishes(redis_broker: Callable[..., Any], scheme: str) -> None:
    broker: brokerkit.Broker = redis_broker(scheme)
    subscription = broker.subscribe("jobs")
    broker.publish_many("jobs", ["x", "y"], delay=0.3)
    broker.publish("jobs", "now")
    assert broker.purge("jobs") == 3
    assert broker.inspect("jobs").scheduled == 0
    assert subscription.receive(timeout=0.6) is None


@pytest.mark.parametrize("scheme", SCHEMES)
def test_delay_poll_interval_is_checked(redis_target: RedisTarget, scheme: str) -> None:
    with pytest.raises(brokerkit.InvalidOption, match="delay_poll_interval"):
        brokerkit.connect(redis_target.url(scheme, delay_poll_interval="0"))


def test_a_stream_consumer_may_not_take_the_parking_name(
    redis_broker: Callable[..., Any],
) -> None:
    broker: brokerkit.Broker = redis_broker("redis+stream")
    with pytest.raises(brokerkit.InvalidOption, match="reserved"):
        broker.subscribe("jobs", consumer="brokerkit:delayed")


def test_a_stream_delayed_retry_is_not_seen_by_other_groups(
    redis_broker: Callable[..., Any],
) -> None:
    broker: brokerkit.Broker = redis_broker("redis+stream", visibility_timeout=0.3)
    retrying, other = broker.subscribe("jobs", group="a"), broker.subscribe("jobs", group="b")
    broker.publish("jobs", "x")
    first = retrying.receive(timeout=5)
    assert first is not None
    first.nack(delay=1.0)  # longer than the visibility timeout: parked, never reclaimed early
    seen = other.receive(timeout=5)
    assert seen is not None and seen.attempt == 1
    seen.ack()
    info = broker.inspect("jobs")
    assert (info.scheduled, info.in_flight, info.oldest_in_flight_age) == (1, 0, None)
    assert all(c.name != "brokerkit:delayed" for g in info.groups for c in g.consumers)
    assert retrying.receive(timeout=0.6) is None  # idle past the lease, but not due
    again = retrying.receive(timeout=3)
    assert again is not None and again.attempt == 2
    again.ack()
    assert other.receive(timeout=0.2) is None
