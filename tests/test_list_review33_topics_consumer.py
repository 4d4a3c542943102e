"""redis+list: ``topics()`` lists a topic that holds a consumer and nothing else, as
:meth:`brokerkit.Broker.topics` promises ("a message, a group, a delivery out, a dead
letter"; memory and redis+stream list a topic whose group exists). Before, only the
queue, deliveries out (``expiry``) and held messages listed a topic: a subscription to
an empty topic was not seen. Once the consumer leaves, the topic holds nothing and is
not listed."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.redis_list


@pytest.fixture
def connect(redis_broker: Callable[..., Any]) -> Callable[..., Any]:
    return functools.partial(redis_broker, "redis+list")


def test_a_topic_with_only_a_consumer_is_listed(connect: Callable[..., Any]) -> None:
    broker = connect()
    with broker.subscribe("waiting") as subscription:
        assert subscription.receive(timeout=0.1) is None  # registered, nothing to fetch
        assert broker.topics() == ["waiting"]
    assert broker.topics() == []


def test_a_template_topic_with_only_a_consumer_is_listed(
    connect: Callable[..., Any], prefix: str
) -> None:
    broker = connect(queue_key=f"q{prefix}:*")
    with broker.subscribe("waiting") as subscription:
        assert subscription.receive(timeout=0.1) is None
        assert broker.topics() == ["waiting"]
    assert broker.topics() == []
