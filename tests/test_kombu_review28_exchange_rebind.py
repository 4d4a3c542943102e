"""kombu+amqp: a topic's exchange deleted (by someone else) under a group's queue took
the queue's binding with it. A publish that found the exchange gone declared it anew,
with the topic's default queue, and stored the message there; the group's queue stayed
unbound, so the live group missed that message and every one after it until a
subscribe of the group declared it again. The redeclare now binds again the queues of
the groups the broker declared. Real RabbitMQ; names under the test's own prefix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.kombu_rabbitmq import delete_names, kombu_broker, rabbitmq

__all__ = ["kombu_broker", "rabbitmq"]

Factory = Callable[..., Any]


def test_a_live_group_gets_what_is_published_after_its_exchange_was_redeclared(
    kombu_broker: Factory,
) -> None:
    broker = kombu_broker()
    prefix = broker.options.prefix
    with broker.subscribe("jobs", group="workers") as workers:
        broker.publish("jobs", "before")
        first = workers.receive(timeout=5)
        assert first is not None and first.body == "before"
        first.ack()
        delete_names({f"{prefix}|jobs"}, set())  # an operator's delete_exchange
        broker.publish("jobs", "after")  # finds it gone, declares it anew
        broker.publish("jobs", "later")
        got = []
        for _ in range(2):
            delivery = workers.receive(timeout=5)
            assert delivery is not None, f"the group missed what followed {got}"
            got.append(delivery.body)
            delivery.ack()
    assert got == ["after", "later"]


def test_a_group_of_the_dead_letter_topic_is_bound_again_too(kombu_broker: Factory) -> None:
    broker = kombu_broker()
    prefix = broker.options.prefix
    with (
        broker.subscribe("jobs", group="workers") as workers,
        broker.subscribe("jobs.dlq", group="alerts") as alerts,
    ):
        broker.publish("jobs", "poison")
        delete_names({f"{prefix}|jobs.dlq"}, set())
        delivery = workers.receive(timeout=5)
        assert delivery is not None
        delivery.nack(requeue=False)  # its dead letter finds the exchange gone
        letter = alerts.receive(timeout=5)
        assert letter is not None, "the dead-letter topic's group missed the dead letter"
        assert letter.body == "poison"
        letter.ack()
