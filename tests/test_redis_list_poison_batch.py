"""redis+list against a real redis-server: a poison message that kills its consumer
process every time takes only itself to the dead-letter topic; the messages fetched
with it reach a handler."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import RedisTarget

pytestmark = pytest.mark.redis_list

#: A worker process: handles each message (prints its id and attempt, acks it) and
#: SIGKILLs itself when handed the poison message, as a segfaulting handler would.
_WORKER = """
import os, signal, sys, brokerkit
url, vt, idle = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
with brokerkit.connect(url, visibility_timeout=vt, max_deliveries=3) as broker:
    subscription = broker.subscribe("jobs", prefetch=10)
    while True:
        delivery = subscription.receive(timeout=idle)
        if delivery is None:
            break
        if delivery.body == "poison":
            os.kill(os.getpid(), signal.SIGKILL)
        print(delivery.id, delivery.attempt, flush=True)
        delivery.ack()
"""


@pytest.fixture
def make(redis_broker: Callable[..., Any]) -> Callable[..., Any]:
    return functools.partial(redis_broker, "redis+list")


def test_a_poison_message_that_kills_its_consumer_takes_only_itself_to_the_dead_letters(
    make: Callable[..., Any], redis_target: RedisTarget, prefix: str
) -> None:
    vt = 0.5
    broker = make(visibility_timeout=vt, max_deliveries=3)
    poison = broker.publish("jobs", "poison")
    good = broker.publish_many("jobs", [f"job-{i}" for i in range(9)])
    url = redis_target.url("redis+list", prefix=prefix)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    handled: dict[str, int] = {}
    kills = 0
    deadline = time.monotonic() + 90
    # Restart the worker, as a supervisor would, until a run ends on its own.
    while True:
        assert time.monotonic() < deadline, f"never settled: handled {handled}, {kills} kills"
        worker = subprocess.run(
            [sys.executable, "-c", _WORKER, url, str(vt), str(6 * vt)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        for line in worker.stdout.splitlines():
            message_id, attempt = line.split()
            handled[message_id] = int(attempt)
        if worker.returncode == 0:
            break
        assert worker.returncode == -9, worker.stderr
        kills += 1
    assert kills == 3, "the poison message was handed out max_deliveries times"
    assert sorted(handled) == sorted(good), "every batch mate of the poison reached a handler"
    dead = broker.subscribe(broker.dead_letter_topic("jobs"))
    letter = dead.receive(timeout=5)
    assert letter is not None
    assert (letter.id, letter.headers["x-dead-letter-reason"]) == (poison, "max_deliveries")
    letter.ack()
    assert dead.receive(timeout=0.2) is None, "only the poison message was dead-lettered"
    assert broker.inspect("jobs").in_flight == 0


def test_a_requeued_message_is_fetched_alone(make: Callable[..., Any]) -> None:
    broker = make(visibility_timeout=30)
    broker.publish_many("jobs", range(4))
    subscription = broker.subscribe("jobs", prefetch=2)
    first = subscription.receive(timeout=5)
    second = subscription.receive(timeout=5)
    assert first is not None and second is not None
    first.nack()  # back at the head of the queue
    second.ack()
    again = subscription.receive(timeout=5)
    assert again is not None and again.id == first.id and again.attempt == 2
    assert subscription.buffered == 0, "a message that came back goes out alone"
    rest = [subscription.receive(timeout=5) for _ in range(2)]
    assert [d.body for d in rest if d is not None] == [2, 3]
    broker.ack(again, *[d for d in rest if d is not None])
