"""NATS: two brokers making the same group with the same config at once: only the
first counts the consumer as made by it (review 27b).

The making only creates (JetStream 2.10 and later refuse a create of a consumer that
exists with another config), but a create of one that exists with the very same
config succeeds: both brokers counted the consumer as theirs, and either one's
``delete(declared)`` removed the consumer the other reads. A consumer is now made
with metadata naming the broker that made it, so the second create differs, and is
refused (nats-server 2.9 drops metadata: there the limit stays, as the NATS page
says).

The race is arranged by a seam: the second broker's request to make the consumer is
held until the first broker has made it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from brokerkit.backends.nats._wire import consumer_name
from tests.nats_group_race import second_subscribes_as_the_first_makes_it
from tests.nats_server import nats

__all__ = ["nats"]  # a fixture

_ACK_WAIT = 30.0


def test_a_group_made_meanwhile_with_the_same_config_is_made_by_one_broker(
    nats: Callable[..., Any], nats_prefix: str
) -> None:
    first = nats(visibility_timeout=_ACK_WAIT)
    second = nats(visibility_timeout=_ACK_WAIT)
    durable = consumer_name("jobs", "g")
    subscription, client, api = second_subscribes_as_the_first_makes_it(first, second)
    assert client.api is api, "the seam was not reached"
    assert (nats_prefix, durable) in first.declared.consumers
    assert (nats_prefix, durable) not in second.declared.consumers
    # The second reads the first's consumer all the same.
    delivery = subscription.receive(timeout=15)
    assert delivery is not None and delivery.body == "x"
    delivery.ack()
