"""NATS: a lease whose group's consumer another program deleted and made again before
the broker's first renewal (its first check of the group) settles or fails at once
(review 33).

Review 32 let go of the leases of a consumer the broker made again itself, and a
renewal's check finds a consumer made again by another program. But between the pull
and the first check (a quarter of the visibility timeout), an ack of a lease whose
consumer was made again by another program went to the new consumer, which has not
delivered that message and never answers it: the ack was sent again and again until
``reconnect_timeout`` (or the lease's end), then raised ConnectionFailed, "did not
answer to ack", on a connection that was fine. Now an ack left unanswered asks the
consumer what it delivered: the lease the new one does not hold is let go, and the ack
raises StaleDelivery (the message comes again from the new consumer).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import brokerkit
from brokerkit.backends.nats._wire import consumer_name
from tests.conftest import LostLeases
from tests.nats_server import nats
from tests.test_nats_consumer_gone import _jetstream
from tests.waiting import call_in_thread

__all__ = ["nats"]  # a fixture

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 30.0
#: Longer than any test may run (pytest's timeout): the visibility timeout (so that no
#: renewal, nor its check, comes during the test) and the reconnect timeout (an ack
#: that waits for either hangs the test).
HOUR = 3600.0


def _remake(url: str, stream: str, durable: str) -> None:
    """Delete the consumer ``durable`` and make it again as it was (another program)."""

    async def remake(js: Any) -> None:
        info = await js.consumer_info(stream, durable)
        await js.delete_consumer(stream, durable)
        await js.add_consumer(stream, info.config)

    _jetstream(url, remake)


@pytest.mark.parametrize("settle", ["ack", "reject"])
def test_a_settle_of_a_lease_of_a_consumer_made_again_elsewhere_ends_at_once(
    nats: Callable[..., Any],
    nats_url: str,
    nats_prefix: str,
    lost_leases: LostLeases,
    settle: str,
) -> None:
    broker = nats(visibility_timeout=HOUR, reconnect_timeout=HOUR)
    subscription = broker.subscribe("jobs", group="g")
    broker.publish("jobs", b"held")
    held = subscription.receive(timeout=GUARD)
    assert held is not None and held.body == b"held"
    _remake(nats_url, nats_prefix, consumer_name("jobs", "g"))
    call = held.ack if settle == "ack" else lambda: held.nack(requeue=False)
    thread, raised = call_in_thread(call)
    thread.join(GUARD)
    assert not thread.is_alive(), f"the {settle} of a lease of the consumer before never ended"
    assert len(raised) == 1 and isinstance(raised[0], brokerkit.StaleDelivery), raised
    # The new consumer delivers the message again: it was not settled by the old lease.
    again = subscription.receive(timeout=GUARD)
    assert again is not None and again.body == b"held" and again is not held
    again.ack()
    assert subscription.receive(timeout=0) is None
