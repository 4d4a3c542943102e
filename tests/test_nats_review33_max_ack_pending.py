"""NATS: a pull the group's ``MaxAckPending`` holds up leases nothing behind the
reader's back (review 33).

A group's consumer leases at most ``MaxAckPending`` messages at once, across all its
readers (10,000 where brokerkit made it; less where another program did). A pull that
asked without waiting (``no_wait``) while the group held that many, or asked for more
than that, was never ended by the server (no 404/408 status): the reader gave up on
it after a second, but the server kept it open, and each ack leased the next message
to it. Those came as stragglers and were handed back (``-NAK``): every message past
the first ``MaxAckPending`` reached the application on its second attempt at the
earliest, and with ``max_deliveries=1`` was dead-lettered without a handler ever
seeing it. Now a reader whose ``no_wait`` pull was not ended moves to a new inbox: the
server drops the request nobody listens to, and what it holds comes to a later pull.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import nats as nats_py
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from brokerkit.backends.nats._wire import consumer_description, consumer_name, subject_for
from tests.nats_server import nats

__all__ = ["nats"]  # a fixture

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 15.0


def _make_group(url: str, stream: str, topic: str, group: str, max_ack_pending: int) -> None:
    """Make the group's consumer as another program would, with a small MaxAckPending."""

    async def make() -> None:
        nc = await nats_py.connect(url)
        try:
            config = ConsumerConfig(
                durable_name=consumer_name(topic, group),
                description=consumer_description(topic, group),
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=60,
                max_ack_pending=max_ack_pending,
                max_deliver=-1,
                filter_subject=subject_for(stream, topic),
                deliver_policy=DeliverPolicy.ALL,
            )
            await nc.jetstream().add_consumer(stream, config)
        finally:
            await nc.close()

    asyncio.run(make())


def test_every_message_comes_first_on_its_first_attempt(
    nats: Callable[..., Any], nats_url: str, nats_prefix: str
) -> None:
    broker = nats(max_deliveries=1)
    broker.publish("other", b"makes the stream")
    _make_group(nats_url, nats_prefix, "jobs", "g", max_ack_pending=2)
    subscription = broker.subscribe("jobs", group="g", prefetch=3)  # (more than 2)
    broker.publish_many("jobs", [b"m0", b"m1", b"m2", b"m3", b"m4"])
    seen: list[tuple[bytes, int]] = []
    for _ in range(5):
        delivery = subscription.receive(timeout=GUARD)
        assert delivery is not None, f"a message never came (got {seen})"
        seen.append((delivery.body, delivery.attempt))
        delivery.ack()
    assert sorted(seen) == [(b"m%d" % i, 1) for i in range(5)]
    assert subscription.receive(timeout=0) is None
    assert broker.inspect("jobs").dead_lettered == 0


def test_a_pull_while_other_readers_hold_max_ack_pending_leases_nothing_later(
    nats: Callable[..., Any], nats_url: str, nats_prefix: str
) -> None:
    broker = nats(max_deliveries=1)
    broker.publish("other", b"makes the stream")
    _make_group(nats_url, nats_prefix, "jobs", "g", max_ack_pending=2)
    holder = broker.subscribe("jobs", group="g", prefetch=2)
    reader = broker.subscribe("jobs", group="g")
    broker.publish_many("jobs", [b"m0", b"m1", b"m2", b"m3"])
    held = [holder.receive(timeout=GUARD) for _ in range(2)]
    assert all(delivery is not None for delivery in held)
    # The group holds MaxAckPending: this pull gets nothing (and is not ended).
    assert reader.receive(timeout=0) is None
    seen: list[tuple[bytes, int]] = []
    for delivery in held:
        seen.append((delivery.body, delivery.attempt))
        delivery.ack()  # (made room: leased to that pull, before the fix)
    for _ in range(2):
        delivery = reader.receive(timeout=GUARD)
        assert delivery is not None, f"a message never came (got {seen})"
        seen.append((delivery.body, delivery.attempt))
        delivery.ack()
    assert sorted(seen) == [(b"m%d" % i, 1) for i in range(4)]
    assert broker.inspect("jobs").dead_lettered == 0
