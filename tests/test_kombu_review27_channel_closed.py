"""kombu+amqp: RabbitMQ closes one subscription's channel on its own (its
``consumer_timeout`` ran out on a delivery held too long; here a settle of an unknown
delivery tag, sent on that channel directly, makes it close the channel the same way,
asynchronously). Whichever call reads the close, only that subscription loses its
channel: what it held comes again, its next receive goes on over a new channel. The
call that happened to read it (another subscription's receive) raised
IncompatibleTopic ("refused a declaration"), and that other subscription's channel was
reset, its deliveries lost; the subscription whose channel was closed went on over
py-amqp's reopened channel, with no consumer and leases that looked held. Real
RabbitMQ: a few names under the test's own prefix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from brokerkit.exceptions import StaleDelivery
from tests.kombu_rabbitmq import kombu_broker, rabbitmq

__all__ = ["kombu_broker", "rabbitmq"]

Factory = Callable[..., Any]


def close_its_channel(broker: Any, subscription: Any) -> None:
    """Have RabbitMQ close ``subscription``'s channel, asynchronously: an ack of a
    delivery tag it never sent (nothing waits for an answer)."""
    with broker._reading_link.lock:
        subscription.state.channel.basic_ack(999_999)


@pytest.mark.parametrize("prefetch", [1, 5])
def test_a_channel_rabbitmq_closes_costs_only_its_subscription(
    kombu_broker: Factory, prefetch: int
) -> None:
    broker = kombu_broker()
    closed = broker.subscribe("closed", group="workers", prefetch=prefetch)
    other = broker.subscribe("other", group="workers")
    broker.publish("closed", "c1")
    broker.publish("other", "o1")
    held_closed = closed.receive(timeout=5)
    held_other = other.receive(timeout=5)
    assert held_closed is not None and held_other is not None
    assert closed.receive(timeout=0.2) is None  # (waits as a consumer: one is registered)
    close_its_channel(broker, closed)
    # The other subscription's receive reads the close: it is not its business.
    assert other.receive(timeout=0.5) is None
    held_other.ack()  # raised StaleDelivery: its channel was reset instead
    with pytest.raises(StaleDelivery) as raised:
        held_closed.ack()
    assert "closed the channel" in str(raised.value)
    assert "declaration" not in str(raised.value)
    again = closed.receive(timeout=5)  # what it held comes again, over a new channel
    assert again is not None and (again.body, again.attempt) == ("c1", 2)
    again.ack()
    broker.publish("closed", "c2")
    after = closed.receive(timeout=5)
    assert after is not None and (after.body, after.attempt) == ("c2", 1)
    after.ack()
    closed.close()
    other.close()
