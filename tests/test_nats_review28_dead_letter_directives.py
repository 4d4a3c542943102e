"""NATS: a dead letter that falls back on the headers a message was stored with does
not carry JetStream's publish directives (review 28).

Where not even a cut reason fits in the room a message near the limits leaves, the
dead letter is the message with the NATS headers it was stored with. Those can hold
what JetStream reads as orders on a publish, which another program's client set when
it stored the message: ``Nats-Expected-Last-Sequence`` (optimistic concurrency, true
then, false by the time of the dead letter), ``Nats-Expected-Last-Subject-Sequence``,
``Nats-Rollup``... Republished with them, the dead letter was refused ("wrong last
sequence"), every time: the message could never be dead-lettered, and came back
after every AckWait. The dead letter now keeps the stored headers but JetStream's
own (``Nats-``), as a message decoded from them does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import nats as nats_py

from brokerkit.backends.nats._wire import MAX_HEADER_BYTES, header_size, subject_for
from tests.nats_server import nats

__all__ = ["nats"]  # a fixture

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 15.0


def _publish_foreign(url: str, subject: str, headers: dict[str, str]) -> int:
    """Publish to ``subject`` as another program would, expecting the stream's last
    sequence to be what it is: the stored message's stream sequence."""

    async def publish() -> int:
        nc = await nats_py.connect(url)
        try:
            js = nc.jetstream()
            info = await js.stream_info(subject.partition(".")[0])
            expected = {"Nats-Expected-Last-Sequence": str(info.state.last_seq)}
            ack = await js.publish(subject, b"payload", headers={**headers, **expected})
            return int(ack.seq)
        finally:
            await nc.close()

    return asyncio.run(publish())


def test_a_stored_expectation_does_not_refuse_the_dead_letter(
    nats: Callable[..., Any], nats_url: str, nats_prefix: str
) -> None:
    broker = nats()
    subscription = broker.subscribe("jobs")
    broker.subscribe("jobs.dlq")  # (the dead-letter topic's group, from the start)
    # A header block all but full: no dead-letter header fits beside it.
    base = {"X-Big": "", "Nats-Expected-Last-Sequence": "0000000000"}
    padding = MAX_HEADER_BYTES - 40 - header_size(base)
    _publish_foreign(nats_url, subject_for(nats_prefix, "jobs"), {"X-Big": "a" * padding})
    broker.publish("other", "moves the stream's last sequence on")
    delivery = subscription.receive(timeout=GUARD)
    assert delivery is not None and delivery.id.startswith("nats-")
    delivery.nack(requeue=False)  # (raised BrokerError: wrong last sequence)
    dead = broker.subscribe("jobs.dlq").receive(timeout=GUARD)
    assert dead is not None and dead.payload == b"payload"
    assert dead.headers.get("X-Big") == "a" * padding
    dead.ack()
    assert subscription.receive(timeout=0) is None
