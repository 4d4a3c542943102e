"""The dead-letter topic of a topic of the longest valid name is a topic like any other:
consumed, inspected, purged and listed (``.dlq`` suffixes do not count in a topic's
length). Before, a topic of 197 to 200 characters dead-lettered to a name every call
refused, where the dead letters piled up out of reach."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import brokerkit
from brokerkit import InvalidTopic
from brokerkit._topics import MAX_TOPIC_LENGTH

LONGEST = "a" * MAX_TOPIC_LENGTH


@pytest.fixture(params=["memory", "redis+list", "redis+stream"])
def broker(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        with brokerkit.connect("memory://", max_deliveries=1) as memory:
            yield memory
        return
    factory: Callable[..., Any] = request.getfixturevalue("redis_broker")
    yield factory(request.param, max_deliveries=1)


def test_the_dead_letter_topic_of_the_longest_topic_is_usable(broker: brokerkit.Broker) -> None:
    broker.publish(LONGEST, "x")
    delivery = broker.subscribe(LONGEST, group="g").receive(timeout=5)
    assert delivery is not None
    delivery.nack(requeue=False, reason="bad")
    dead_letters = broker.dead_letter_topic(LONGEST)
    assert broker.inspect(LONGEST).dead_lettered == 1
    assert broker.inspect(dead_letters).length == 1
    assert dead_letters in broker.topics()
    with broker.subscribe(dead_letters) as subscription:
        dead = subscription.receive(timeout=5)
        assert dead is not None and dead.body == "x"
        dead.nack(requeue=False)  # to the dead-letter topic's own dead-letter topic
    deeper = broker.dead_letter_topic(dead_letters)
    assert broker.purge(deeper) == 1
    brokerkit.Worker(broker).handler(deeper)(lambda body: None)


def test_a_topic_longer_than_the_limit_is_still_refused() -> None:
    with brokerkit.connect("memory://") as broker:
        for topic in ("a" * (MAX_TOPIC_LENGTH + 1), "a" * (MAX_TOPIC_LENGTH + 1) + ".dlq"):
            with pytest.raises(InvalidTopic, match="at most 200 characters"):
                broker.publish(topic, "x")
        too_deep = LONGEST + ".dlq" * 11
        with pytest.raises(InvalidTopic, match=r"not counting up to 10 \.dlq suffixes"):
            broker.dead_letter_topic(too_deep)
