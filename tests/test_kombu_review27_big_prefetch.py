"""kombu+amqp: a prefetch larger than AMQP's ``basic.qos`` can carry (a prefetch count
is an unsigned short, at most 65,535) is served with a qos of 65,535: the prefetch is
brokerkit's batch, valid on every backend. A receive that waited as a consumer raised
``struct.error`` ("'H' format requires 0 <= number <= 65535"), not a BrokerError.
Real RabbitMQ: one queue under the test's own prefix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.kombu_rabbitmq import kombu_broker, rabbitmq

__all__ = ["kombu_broker", "rabbitmq"]

Factory = Callable[..., Any]


def test_a_prefetch_past_amqps_qos_limit_is_served(kombu_broker: Factory) -> None:
    broker = kombu_broker()
    with broker.subscribe("jobs", prefetch=70_000) as jobs:
        assert jobs.receive(timeout=0.2) is None  # waits as a consumer: basic.qos
        broker.publish_many("jobs", ["a", "b", "c"])
        got = []
        for _ in range(3):
            delivery = jobs.receive(timeout=5)
            assert delivery is not None
            got.append(delivery.body)
            delivery.ack()
    assert got == ["a", "b", "c"]
