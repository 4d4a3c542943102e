"""NATS: a publish after another program deleted the broker's stream (review 32).

The stream is made at a broker's first publish (or subscribe) and then taken as
there. Deleted since (``nats stream rm``), the next publish of each broker raised
BrokerError "no JetStream stream captures its subject": nothing stored it (the
server had nobody to answer), and only the publish after it made the stream again.
Now the publish makes the stream again, as the first one did, and sends its
messages again (their ``Nats-Msg-Id`` is the same): they are stored once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.nats_server import delete_stream, nats

__all__ = ["nats"]  # a fixture

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 15.0


def test_a_publish_makes_a_stream_deleted_since_again(
    nats: Callable[..., Any], nats_url: str, nats_prefix: str
) -> None:
    broker = nats()
    broker.publish("orders", b"before")
    delete_stream(nats_url, nats_prefix)
    broker.publish_many("orders", [b"one", b"two"])
    with broker.subscribe("orders") as subscription:
        got = []
        while (delivery := subscription.receive(timeout=1)) is not None:
            got.append(delivery.body)
            delivery.ack()
    assert got == [b"one", b"two"]
