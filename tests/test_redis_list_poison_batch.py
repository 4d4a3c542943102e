"""redis+list against a real redis-server: a poison message that kills its consumer
process every time takes only itself to the dead-letter topic; the messages fetched
with it reach a handler."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import RedisTarget
from tests.poison_worker import supervise

pytestmark = pytest.mark.redis_list


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
    handled, kills = supervise(url, vt, idle=6 * vt)
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
