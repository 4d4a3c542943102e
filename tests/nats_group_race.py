"""Two NATS brokers making the same group at once, for the tests of that race: the
second broker's request to make the group's durable consumer is held (a seam) until
the first broker has made it."""

from __future__ import annotations

from typing import Any

import brokerkit

__all__ = ["second_subscribes_as_the_first_makes_it"]


def second_subscribes_as_the_first_makes_it(
    first: Any, second: Any, topic: str = "jobs", group: str = "g"
) -> tuple[brokerkit.Subscription, Any, Any]:
    """``first`` publishes "x" on ``topic`` (which makes the stream); then
    ``second``'s subscription to ``group`` of ``topic``, its request to make the
    group's consumer held until ``first`` has made it (subscribing meanwhile); with
    the second's client and its own API call, which the seam put back once reached
    (the test checks ``client.api is api``)."""
    first.publish(topic, "x")  # (the stream)
    client = second.inner._client
    api = client.api

    async def first_makes_it_meanwhile(subject: str, body: Any, what: str) -> Any:
        if subject.startswith("CONSUMER.DURABLE.CREATE."):
            client.api = api
            first.subscribe(topic, group=group)  # (blocks this loop: it is held meanwhile)
        return await api(subject, body, what)

    client.api = first_makes_it_meanwhile
    return second.subscribe(topic, group=group), client, api
