"""kombu+memory and kombu+redis when another broker of the same prefix (or an operator)
deletes a topic's queues and bindings while a broker that declared them goes on: its
publishes went to kombu's undeliverable queue (``ae.undeliver``), lost to every
consumer of the topic, and subscribing again did not bind the group's queue anew. A
broker declares a queue once per channel; a publish now checks that the topic's
default queue is still bound, and a subscribe declares its queue anew. And inspect, a
look, declares nothing. kombu+redis runs on the test suite's own redis-server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.test_kombu_virtual import kombu_virtual, virtual_url

__all__ = ["kombu_virtual", "virtual_url"]

Factory = Callable[..., Any]
TRANSPORTS = ["memory", "redis"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_publish_after_another_broker_deleted_the_topic_is_not_lost(
    kombu_virtual: Factory, transport: str
) -> None:
    publisher = kombu_virtual(transport)
    other = kombu_virtual(transport)
    publisher.publish("jobs", "before")
    other.publish("jobs", "warm-up")  # (other declares them too, so may delete them)
    other.delete(*other.declared)  # the topic is retired...
    publisher.publish("jobs", "after")  # ...and published to again: not lost
    with other.subscribe("jobs") as jobs:
        delivery = jobs.receive(timeout=2)
        assert delivery is not None, "the publish after the delete went nowhere"
        assert delivery.body == "after"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_subscribing_again_after_another_broker_deleted_the_group_binds_it_anew(
    kombu_virtual: Factory, transport: str
) -> None:
    broker = kombu_virtual(transport)
    other = kombu_virtual(transport)
    with broker.subscribe("jobs", group="workers"):
        pass
    with other.subscribe("jobs", group="workers"):
        pass
    other.delete(*other.declared)
    with broker.subscribe("jobs", group="workers") as workers:
        other.publish("jobs", "after")
        delivery = workers.receive(timeout=2)
        assert delivery is not None, "the group's queue was not bound anew"
        assert delivery.body == "after"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_inspect_of_a_topic_never_published_declares_nothing(
    kombu_virtual: Factory, transport: str
) -> None:
    broker = kombu_virtual(transport)
    info = broker.inspect("never")  # (an operator's typo, say)
    # No queue, no group: the topic is not found (review 31; it reported "default").
    assert (info.length, [(g.name, g.lag) for g in info.groups]) == (0, [])
    # It declared the topic's exchange and default queue: in Redis, kombu's binding set.
    assert broker.declared == (frozenset(), frozenset())
    broker.publish("jobs", "waiting")
    assert broker.inspect("jobs").length == 1
