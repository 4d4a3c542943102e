"""kombu+amqp when someone else deletes a queue or exchange the broker declared (an
operator's ``rabbitmqctl delete_queue``, another process's ``broker.delete``): a
publish must not be confirmed into nowhere, and subscribing again must declare the
queue anew, as the docs say. Real RabbitMQ; each test declares a handful of names
under its own prefix and deletes them at the end."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from brokerkit.exceptions import IncompatibleTopic
from tests.kombu_rabbitmq import delete_names, kombu_broker, rabbitmq

__all__ = ["kombu_broker", "rabbitmq"]

Factory = Callable[..., Any]


def _queue(broker: Any, topic: str, group: str = "default") -> str:
    return f"{broker.options.prefix}|{topic}|{group}"


def _exchange(broker: Any, topic: str) -> str:
    return f"{broker.options.prefix}|{topic}"


def test_a_publish_after_the_default_queue_was_deleted_is_not_lost(
    kombu_broker: Factory,
) -> None:
    broker = kombu_broker()
    broker.publish("jobs", "first")  # declares the topic (once per connection)
    delete_names(set(), {_queue(broker, "jobs")})
    broker.publish("jobs", "second")  # was confirmed, routed to no queue: lost
    with broker.subscribe("jobs") as jobs:
        delivery = jobs.receive(timeout=5)
        assert delivery is not None, "the confirmed publish was lost"
        assert delivery.body == "second"
        delivery.ack()


def test_a_publish_after_the_exchange_was_deleted_is_stored(kombu_broker: Factory) -> None:
    broker = kombu_broker()
    broker.publish("jobs", "first")
    delete_names({_exchange(broker, "jobs")}, set())
    broker.publish("jobs", "second")  # raised IncompatibleTopic ("subscribe again")
    with broker.subscribe("jobs") as jobs:
        got = []
        for _ in range(2):
            delivery = jobs.receive(timeout=5)
            assert delivery is not None
            got.append(delivery.body)
            delivery.ack()
    assert got == ["first", "second"]


def test_subscribing_again_after_the_queue_was_deleted_declares_it_anew(
    kombu_broker: Factory,
) -> None:
    broker = kombu_broker()
    with broker.subscribe("jobs", group="workers") as workers:
        delete_names(set(), {_queue(broker, "jobs", "workers")})
        with pytest.raises(IncompatibleTopic):
            workers.receive(timeout=1)
    # The docs: "subscribe again to declare it anew" (it raised IncompatibleTopic).
    with broker.subscribe("jobs", group="workers") as workers:
        broker.publish("jobs", "after")
        delivery = workers.receive(timeout=5)
        assert delivery is not None and delivery.body == "after"
        delivery.ack()


def test_a_dead_letter_after_the_dead_letter_queue_was_deleted_is_not_lost(
    kombu_broker: Factory,
) -> None:
    broker = kombu_broker()
    with broker.subscribe("jobs", group="workers") as workers:
        broker.publish("jobs", "poison")
        delete_names(set(), {_queue(broker, "jobs.dlq")})
        delivery = workers.receive(timeout=5)
        assert delivery is not None
        delivery.nack(requeue=False)
    with broker.subscribe("jobs.dlq") as dead:
        letter = dead.receive(timeout=5)
        assert letter is not None, "the dead letter was confirmed into no queue"
        assert letter.body == "poison"
        assert letter.headers["x-dead-letter-reason"] == "rejected"
        letter.ack()


def test_a_dead_letter_after_the_dead_letter_exchange_was_deleted_is_not_lost(
    kombu_broker: Factory,
) -> None:
    broker = kombu_broker()
    with broker.subscribe("jobs", group="workers") as workers:
        broker.publish("jobs", "poison")
        delete_names({_exchange(broker, "jobs.dlq")}, set())
        delivery = workers.receive(timeout=5)
        assert delivery is not None
        delivery.nack(requeue=False)  # raised IncompatibleTopic, the lease kept
    with broker.subscribe("jobs.dlq") as dead:
        letter = dead.receive(timeout=5)
        assert letter is not None
        assert letter.body == "poison"
        letter.ack()


def test_a_purge_after_a_group_queue_was_deleted_purges_the_rest(kombu_broker: Factory) -> None:
    broker = kombu_broker()
    with broker.subscribe("jobs", group="workers"):
        broker.publish("jobs", "waiting")
        delete_names(set(), {_queue(broker, "jobs", "workers")})
        # It raised IncompatibleTopic ("subscribe again"). A purge declares nothing
        # (review 28: a purge of a missing topic left it declared): the deleted queue
        # stays deleted, counts 0, and the next subscribe of the group declares it.
        assert broker.purge("jobs") == 1  # the default group's message
        # not declared anew: inspect reports no group whose queue is gone (review 31)
        assert [g.name for g in broker.inspect("jobs").groups] == ["default"]
