"""kombu+amqp: RabbitMQ cancels a subscription's consumer when its queue is deleted
(``basic.cancel`` from the server). That one subscription's next receive raises
IncompatibleTopic, as the docs say; the broker's other subscriptions are not touched.
py-amqp raised ConsumerCancelled, a connection error, for a consumer with no cancel
callback: the reading connection was dropped and opened again, and every delivery the
broker's other subscriptions held went with it (their acks raised StaleDelivery, the
messages delivered again). Real RabbitMQ: a few names under the test's own prefix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from brokerkit.exceptions import IncompatibleTopic
from tests.kombu_rabbitmq import delete_names, kombu_broker, rabbitmq

__all__ = ["kombu_broker", "rabbitmq"]

Factory = Callable[..., Any]


def test_a_deleted_queue_of_one_subscription_spares_the_others(kombu_broker: Factory) -> None:
    broker = kombu_broker()
    kept = broker.subscribe("kept", group="workers")
    gone = broker.subscribe("gone", group="workers")
    broker.publish("kept", "held")
    held = kept.receive(timeout=5)
    assert held is not None
    # Waiting on its empty queue, it registers a consumer (kept after the receive).
    assert gone.receive(timeout=0.2) is None
    delete_names(set(), {f"{broker.options.prefix}|gone|workers"})
    with pytest.raises(IncompatibleTopic):
        gone.receive(timeout=5)  # (the cancel comes, then basic.get finds no queue)
    held.ack()  # raised StaleDelivery: the connection was dropped with it
    broker.publish("kept", "next")
    after = kept.receive(timeout=5)
    assert after is not None and (after.body, after.attempt) == ("next", 1)
    after.ack()
    gone.close()
    kept.close()
