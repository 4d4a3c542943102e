"""NATS: the leases a broker holds of a group whose consumer it made again itself (a
fetch found it deleted, alone or with its stream) are lost at once (review 32).

The docs promise that settling a lease taken from the consumer before raises
StaleDelivery. But a broker that made the consumer again itself kept counting those
leases as held: its ack went to the server, which does not answer an ack of a
deleted stream's message, and waited out the lease (the visibility timeout) before
raising ConnectionFailed, "did not answer to ack within reconnect_timeout", on a
connection that was fine; with the consumer alone deleted, the ack of the old lease
was taken by the new consumer, settling the message it delivers again to whoever
pulls it next. Now making the consumer again lets go of the leases taken from the one
before (reported to ``brokerkit_on_lease_lost``); their settle raises StaleDelivery at
once, and the message comes again from the new consumer.
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
from tests.waiting import call_in_thread, wait_until

__all__ = ["nats"]  # a fixture

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 15.0


@pytest.mark.parametrize("deleted", ["consumer", "stream"])
def test_the_leases_of_a_consumer_the_broker_made_again_are_lost_at_once(
    nats: Callable[..., Any],
    nats_url: str,
    nats_prefix: str,
    lost_leases: LostLeases,
    deleted: str,
) -> None:
    broker = nats(visibility_timeout=60)  # (the lease holds past GUARD)
    subscription = broker.subscribe("jobs", group="g")
    broker.publish("jobs", b"held")
    held = subscription.receive(timeout=GUARD)
    assert held is not None and held.body == b"held"
    durable = consumer_name("jobs", "g")
    if deleted == "consumer":
        _jetstream(nats_url, lambda js: js.delete_consumer(nats_prefix, durable))
    else:
        _jetstream(nats_url, lambda js: js.delete_stream(nats_prefix))
    # The next fetch finds the group gone and makes it again (and its stream).
    again = subscription.receive(timeout=2)
    if deleted == "consumer":  # (the message is still stored: delivered again)
        assert again is not None and again.body == b"held" and again is not held
    else:
        assert again is None
    thread, raised = call_in_thread(held.ack)
    thread.join(GUARD)
    assert not thread.is_alive(), "the ack of a lease of the consumer before never ended"
    assert len(raised) == 1 and isinstance(raised[0], brokerkit.StaleDelivery), raised
    wait_until(lambda: held in lost_leases.lost, "the report of the lease lost", within=GUARD)
    if again is not None:
        again.ack()  # (its own lease: not settled by the old one's ack)
    broker.publish("jobs", b"after")
    after = subscription.receive(timeout=GUARD)
    assert after is not None and after.body == b"after"
    after.ack()
    assert subscription.receive(timeout=0) is None
