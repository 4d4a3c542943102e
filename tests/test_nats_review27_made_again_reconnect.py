"""NATS: a lease held across a lost connection, whose group's consumer was made again
meanwhile, is found lost by the first settle after the reconnection (review 27).

After a reconnection, the first settle of a lease from before asks the group's
consumer what it has delivered (a server that restarted may have forgotten the
lease). A consumer made again (deleted, then made by another broker) that had
delivered the message again to another consumer passed that check: the old holder's
ack was sent, and settled the message in its new holder's hands. The same answer
says when the consumer was made: a lease from the one before is lost (StaleDelivery,
nothing sent), as the renewals' AckWait check finds it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import nats as nats_py
import pytest

import brokerkit
from brokerkit.backends.nats._wire import consumer_name
from tests.nats_server import nats, nats_address
from tests.test_nats import _Proxy
from tests.waiting import wait_until

__all__ = ["nats"]  # a fixture

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 15.0
#: Long enough that no renewal round (a quarter of it) comes within the test but the
#: first, at the renewals' start.
_ACK_WAIT = 120


def _delete_consumer(url: str, stream: str, durable: str) -> None:
    async def delete() -> None:
        nc = await nats_py.connect(url)
        try:
            await nc.jetstream().delete_consumer(stream, durable)
        finally:
            await nc.close()

    asyncio.run(delete())


def test_a_lease_of_a_consumer_made_again_is_lost_after_a_reconnection(
    nats: Callable[..., Any], nats_url: str, nats_prefix: str
) -> None:
    proxy = _Proxy(nats_address(nats_url))
    try:
        holder = nats(f"nats://127.0.0.1:{proxy.port}", visibility_timeout=_ACK_WAIT)
        subscription = holder.subscribe("jobs", group="g")
        holder.publish("jobs", "held")
        held = subscription.receive(timeout=GUARD)
        assert held is not None
        lease = held.receipt.receipt  # (the asyncio delivery's)
        wait_until(lambda: lease.confirmed, "the renewals' first check", within=GUARD)
        _delete_consumer(nats_url, nats_prefix, consumer_name("jobs", "g"))
        rival = nats(visibility_timeout=_ACK_WAIT)
        again = rival.subscribe("jobs", group="g").receive(timeout=GUARD)  # (made again)
        assert again is not None and again.body == "held"
        proxy.cut()
        holder.publish("jobs", "after")  # (retried until the holder is back)
        with pytest.raises(brokerkit.StaleDelivery):
            held.ack()
        again.ack()  # still its holder's: the old holder's ack was not sent
        info = rival.inspect("jobs").groups[0]
        assert info.pending == 0
    finally:
        proxy.close()
