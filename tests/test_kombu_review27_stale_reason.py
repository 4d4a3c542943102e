"""kombu+amqp: a late settle of a delivery whose lease ran out says so, also when its
subscription was closed meanwhile (brokerkit closes a closed subscription's channel once
the reaper handed back the last delivery it held): it said that RabbitMQ closed the
channel, sending whoever reads it after a fault that did not happen. Real RabbitMQ."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from brokerkit.exceptions import StaleDelivery
from tests.kombu_rabbitmq import kombu_broker, rabbitmq

__all__ = ["kombu_broker", "rabbitmq"]

Factory = Callable[..., Any]


@pytest.mark.parametrize("settle", ["ack", "nack", "extend"])
def test_a_lease_that_ran_out_on_a_closed_subscription_is_reported_as_run_out(
    kombu_broker: Factory, settle: str
) -> None:
    broker = kombu_broker(visibility_timeout=0.5)
    with broker.subscribe("jobs", group="workers") as first:
        broker.publish("jobs", "slow")
        held = first.receive(timeout=5)
        assert held is not None
    # Closed with the delivery still held: its channel stays open for it until the
    # reaper hands it back after the visibility timeout, then is closed.
    with broker.subscribe("jobs", group="workers") as second:
        again = second.receive(timeout=10)  # (the reaper handed it back)
        assert again is not None and again.id == held.id and again.attempt == 2
        with pytest.raises(StaleDelivery) as raised:
            getattr(held, settle)()
        again.ack()
    text = str(raised.value)
    assert "closed the channel" not in text
    assert "expired" in text
