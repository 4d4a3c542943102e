"""NATS: a reject (dead-lettering) of a delivery whose stream was deleted raises
StaleDelivery, as its ack does (review 33).

The lease went with the stream (its consumer and its message too): review 32 made an
ack of it raise StaleDelivery. A ``nack(requeue=False)`` stores the dead letter first,
which the server refused (no stream captures its subject): it raised the broker's
internal ``_NoStream`` error ("could not dead-letter: no JetStream stream captures its
subject") instead of saying that the delivery is no longer held. Now it raises
StaleDelivery, and nothing is dead-lettered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import brokerkit
from tests.nats_server import nats
from tests.test_nats_consumer_gone import _jetstream

__all__ = ["nats"]  # a fixture

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 15.0


@pytest.mark.parametrize("how", ["reject", "max_deliveries"])
def test_a_dead_lettering_after_the_stream_was_deleted_is_stale(
    nats: Callable[..., Any], nats_url: str, nats_prefix: str, how: str
) -> None:
    broker = nats(visibility_timeout=3600, max_deliveries=1)
    subscription = broker.subscribe("jobs", group="g")
    broker.publish("jobs", b"held")
    held = subscription.receive(timeout=GUARD)
    assert held is not None and held.body == b"held"
    _jetstream(nats_url, lambda js: js.delete_stream(nats_prefix))
    # (a nack on the last allowed attempt dead-letters too)
    settle = (lambda: held.nack(requeue=False)) if how == "reject" else held.nack
    with pytest.raises(brokerkit.StaleDelivery):
        settle()
    # The broker goes on: the next fetch makes the group (and its stream) again.
    assert subscription.receive(timeout=0) is None
    assert broker.inspect("jobs.dlq").length == 0
    broker.publish("jobs", b"after")
    after = subscription.receive(timeout=GUARD)
    assert after is not None and after.body == b"after"
    after.ack()
