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
from tests.nats_server import nats

__all__ = ["nats"]  # a fixture

_ACK_WAIT = 30.0


def test_a_group_made_meanwhile_with_the_same_config_is_made_by_one_broker(
    nats: Callable[..., Any], nats_prefix: str
) -> None:
    first = nats(visibility_timeout=_ACK_WAIT)
    second = nats(visibility_timeout=_ACK_WAIT)
    first.publish("jobs", "x")  # (the stream)
    durable = consumer_name("jobs", "g")
    client = second.inner._client
    api = client.api

    async def first_makes_it_meanwhile(subject: str, body: Any, what: str) -> Any:
        if subject.startswith("CONSUMER.DURABLE.CREATE."):
            client.api = api
            first.subscribe("jobs", group="g")  # (blocks this loop: it is held meanwhile)
        return await api(subject, body, what)

    client.api = first_makes_it_meanwhile
    subscription = second.subscribe("jobs", group="g")
    assert client.api is api, "the seam was not reached"
    assert (nats_prefix, durable) in first.declared.consumers
    assert (nats_prefix, durable) not in second.declared.consumers
    # The second reads the first's consumer all the same.
    delivery = subscription.receive(timeout=15)
    assert delivery is not None and delivery.body == "x"
    delivery.ack()
