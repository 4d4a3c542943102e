"""redis+list: ``topics()`` lists a topic whose only state is its consumers set only
while a consumer in it is alive (its heartbeat deadline, the member's score, not yet
passed by server time). Before, any member listed it: a consumer that died on an empty
topic (its process killed: it never left) kept the topic listed for ever, an abandoned
topic, until a rescue or another subscriber's maintenance took the member out."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.redis_list


@pytest.fixture
def connect(redis_broker: Callable[..., Any]) -> Callable[..., Any]:
    return functools.partial(redis_broker, "redis+list")


@pytest.mark.parametrize("template", [False, True])
def test_a_topic_whose_only_consumer_died_is_not_listed(
    connect: Callable[..., Any], prefix: str, template: bool
) -> None:
    broker = connect(**({"queue_key": f"q{prefix}:*"} if template else {}))
    client = broker._client
    with broker.subscribe("abandoned") as subscription:
        assert subscription.receive(timeout=0.1) is None  # registered, nothing to fetch
        assert broker.topics() == ["abandoned"]  # alive: listed
        broker._suspend_renewals()  # its process hangs, then dies: it never leaves
        consumers = broker._topic("abandoned").keys.consumers
        (member,) = client.zrange(consumers, 0, -1)
        client.zadd(consumers, {member: 1})  # its heartbeat deadline long past
        assert broker.topics() == []
        # a message (or any other state) lists it again, dead consumer or not
        broker.publish("abandoned", b"m")
        assert broker.topics() == ["abandoned"]
        broker.purge("abandoned")
