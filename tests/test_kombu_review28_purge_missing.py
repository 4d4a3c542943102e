"""kombu+amqp (and kombu+memory, kombu+redis): purging a topic that does not exist
creates nothing (it declared the topic's durable exchange and default queue, and its
dead-letter topic's, which then outlived the call; on the virtual transports the
exchange, queue and binding) and reports 0. Real RabbitMQ and the suite's own
redis-server; under the test's own prefix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import RedisTarget
from tests.kombu_rabbitmq import exists, kombu_broker, rabbitmq, raw_connection
from tests.test_kombu_virtual import kombu_virtual, leftovers, virtual_url

__all__ = ["kombu_broker", "kombu_virtual", "rabbitmq", "virtual_url"]

Factory = Callable[..., Any]


def _names(broker: Any, topic: str, groups: list[str]) -> list[tuple[str, str]]:
    prefix = broker.options.prefix
    names = [("exchange", f"{prefix}|{topic}"), ("exchange", f"{prefix}|{topic}.dlq")]
    names += [("queue", f"{prefix}|{topic}|{group}") for group in groups]
    names += [("queue", f"{prefix}|{topic}.dlq|default"), ("exchange", f"{prefix}|{topic}.dlq.dlq")]
    return names


def test_purging_a_missing_topic_declares_nothing(kombu_broker: Factory) -> None:
    broker = kombu_broker()
    assert broker.purge("never-published") == 0
    assert broker.declared.exchanges == frozenset()
    assert broker.declared.queues == frozenset()
    left = [
        name for kind, name in _names(broker, "never-published", ["default"]) if exists(kind, name)
    ]
    assert left == [], f"purge of a missing topic declared {left}"


def test_purging_a_topic_whose_group_queue_is_gone_declares_nothing(
    kombu_broker: Factory,
) -> None:
    """A group this broker knows (it subscribed it) whose queue someone deleted: purge
    does not declare it again, and purges the rest."""
    broker = kombu_broker()
    prefix = broker.options.prefix
    with broker.subscribe("jobs", group="workers"):
        pass
    broker.publish("jobs", "waiting")
    with raw_connection() as connection:
        channel = connection.channel()
        channel.queue_delete(f"{prefix}|jobs|workers")
        channel.close()
    assert broker.purge("jobs") == 1  # the default queue's one message
    assert not exists("queue", f"{prefix}|jobs|workers")


def test_purging_an_existing_topic_still_purges(kombu_broker: Factory) -> None:
    broker = kombu_broker()
    with broker.subscribe("jobs", group="workers"):
        pass
    broker.publish_many("jobs", ["a", "b"])
    assert broker.purge("jobs") == 4  # two in each queue
    assert broker.inspect("jobs").length == 0


@pytest.mark.parametrize("transport", ["memory", "redis"])
def test_purging_a_missing_topic_declares_nothing_on_a_virtual_transport(
    kombu_virtual: Factory, redis_target: RedisTarget, transport: str
) -> None:
    broker = kombu_virtual(transport)
    assert broker.purge("never-published") == 0
    assert broker.declared == (frozenset(), frozenset())
    assert leftovers(redis_target, broker.options.prefix) == []
    broker.publish("jobs", "waiting")
    assert broker.purge("jobs") == 1
