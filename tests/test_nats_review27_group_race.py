"""NATS: two brokers making the same group at once keep the first one's consumer
(review 27).

A broker makes a group's durable consumer when it finds none. Another broker could
make it between that look and the making: the making then changed the other's
consumer in place (JetStream's create updates an existing durable consumer), to its
own AckWait, under the feet of the broker that made it and held its deliveries with
the AckWait it had set; and both brokers counted the consumer as theirs (both
:attr:`declared` it, to delete it). The making now only creates (JetStream 2.10 and
later refuse to change a consumer through it): the other's consumer is taken as it
is, as a broker that joins an existing group takes it.

The race is arranged by a seam: the second broker's request to make the consumer is
held until the first broker has made it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import nats as nats_py

from brokerkit.backends.nats._wire import consumer_name
from tests.nats_group_race import second_subscribes_as_the_first_makes_it
from tests.nats_server import nats

__all__ = ["nats"]  # a fixture

_FIRST = 2.0
_SECOND = 30.0


def _ack_wait(url: str, stream: str, durable: str) -> float:
    async def ask() -> float:
        nc = await nats_py.connect(url)
        try:
            reply = await nc.request(f"$JS.API.CONSUMER.INFO.{stream}.{durable}", b"", timeout=5)
            return float(json.loads(reply.data)["config"]["ack_wait"]) / 1e9
        finally:
            await nc.close()

    return asyncio.run(ask())


def test_a_group_made_meanwhile_by_another_broker_is_taken_as_it_is(
    nats: Callable[..., Any], nats_url: str, nats_prefix: str
) -> None:
    first = nats(visibility_timeout=_FIRST)
    second = nats(visibility_timeout=_SECOND)
    durable = consumer_name("jobs", "g")
    subscription, client, api = second_subscribes_as_the_first_makes_it(first, second)
    assert client.api is api, "the seam was not reached"
    assert _ack_wait(nats_url, nats_prefix, durable) == _FIRST, "the first's consumer changed"
    assert subscription.state.state.ack_wait == _FIRST
    assert (nats_prefix, durable) in first.declared.consumers
    assert (nats_prefix, durable) not in second.declared.consumers
