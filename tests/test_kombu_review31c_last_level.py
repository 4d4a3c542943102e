"""kombu+amqp at the last dead-letter level: a topic that ends with
MAX_DEAD_LETTER_LEVELS ``.dlq`` suffixes is its own dead-letter topic (459981d), so
its queues' ``x-dead-letter-exchange`` is its own exchange, and no exchange or queue
of the 11-level name (which no call accepts: RabbitMQ's own dead letters would go
out of reach there) is ever declared. Against the real RabbitMQ."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from brokerkit._topics import DEAD_LETTER_SUFFIX, MAX_DEAD_LETTER_LEVELS
from tests.kombu_rabbitmq import kombu_broker, rabbitmq

__all__ = ["kombu_broker", "rabbitmq"]  # fixtures

#: Seconds a receive may wait at most: a hang guard, never a pace.
GUARD = 15.0
LAST_LEVEL = "orders" + DEAD_LETTER_SUFFIX * MAX_DEAD_LETTER_LEVELS


def test_a_reject_on_the_last_level_comes_back_and_nothing_deeper_is_declared(
    kombu_broker: Callable[..., Any],
) -> None:
    broker = kombu_broker()
    assert broker.dead_letter_topic(LAST_LEVEL) == LAST_LEVEL
    with broker.subscribe(LAST_LEVEL) as subscription:
        sent = broker.publish(LAST_LEVEL, b"poison")
        first = subscription.receive(timeout=GUARD)
        assert first is not None and first.id == sent
        first.nack(requeue=False, reason="bad input")
        again = subscription.receive(timeout=GUARD)
        assert again is not None, "the dead letter was lost (sent to an 11-level name?)"
        assert again.payload == b"poison"
        assert again.headers.get("x-dead-letter-reason") == "bad input"
        again.ack()
    deeper = LAST_LEVEL + DEAD_LETTER_SUFFIX
    declared = broker.declared
    assert not [name for name in declared.exchanges if name.endswith(deeper)], declared
    assert not [name for name in declared.queues if deeper in name], declared
