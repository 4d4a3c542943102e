"""The NATS backend when its group's consumer or stream is deleted under a
subscription, and when it closes against a server that stopped answering.

A deleted durable consumer answers no pull: JetStream says so with a "no responders"
status (503), which a subscription must not read as "nothing there" forever. It makes
the consumer (and the stream) again, as ``subscribe`` made them, and says so; where
that cannot work it raises IncompatibleTopic.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

import nats as nats_py
import pytest

from brokerkit.backends.nats._wire import consumer_name
from brokerkit.exceptions import BrokerError, IncompatibleTopic
from tests.nats_server import delete_stream, nats, nats_address

__all__ = ["nats"]  # a fixture
from tests.proxies import BlackHole


def _jetstream(url: str, action: Callable[[Any], Any]) -> None:
    """Run ``action(jetstream)`` on a connection of its own (another program's)."""

    async def run() -> None:
        nc = await nats_py.connect(url)
        try:
            await action(nc.jetstream())
        finally:
            await nc.close()

    asyncio.run(run())


def _receive_payload(subscription: Any, payload: bytes, seconds: float = 15) -> list[bytes]:
    """Receive (and ack) until ``payload`` comes; every payload received, in order.
    Fails the test if it does not come within ``seconds``."""
    got: list[bytes] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        delivery = subscription.receive(timeout=0.5)
        if delivery is None:
            continue
        got.append(delivery.payload)
        delivery.ack()
        if delivery.payload == payload:
            return got
    pytest.fail(f"{payload!r} never came in {seconds:.0f} s (got {got!r})")


def test_a_group_whose_consumer_was_deleted_is_made_again(
    nats: Callable[..., Any], nats_url: str, nats_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    broker = nats()
    subscription = broker.subscribe("orders", group="billing")
    broker.publish("orders", b"one")
    assert _receive_payload(subscription, b"one") == [b"one"]
    durable = consumer_name("orders", "billing")
    _jetstream(nats_url, lambda js: js.delete_consumer(nats_prefix, durable))
    broker.publish("orders", b"two")
    with caplog.at_level(logging.WARNING, logger="brokerkit.nats"):
        got = _receive_payload(subscription, b"two")
    # Made again from the subscription's start (earliest): the topic's history too.
    assert got == [b"one", b"two"]
    assert any("made it again" in r.getMessage() for r in caplog.records), caplog.text
    assert [g.name for g in broker.inspect("orders").groups] == ["billing"]


def test_a_group_whose_stream_was_deleted_is_made_again(
    nats: Callable[..., Any], nats_url: str, nats_prefix: str
) -> None:
    broker = nats()
    subscription = broker.subscribe("orders", group="billing")
    broker.publish("orders", b"one")
    assert _receive_payload(subscription, b"one") == [b"one"]
    _jetstream(nats_url, lambda js: js.delete_stream(nats_prefix))
    assert subscription.receive(timeout=0.5) is None  # makes the stream and the group
    broker.publish("orders", b"two")
    assert _receive_payload(subscription, b"two") == [b"two"]


def test_a_group_that_cannot_be_made_again_is_an_incompatible_topic(
    nats: Callable[..., Any], nats_url: str, nats_prefix: str
) -> None:
    broker = nats()
    subscription = broker.subscribe("orders", group="billing")
    other = f"{nats_prefix}_other"

    async def replace(js: Any) -> None:
        # Another stream now captures the prefix's subjects: this one cannot be made.
        await js.delete_stream(nats_prefix)
        await js.add_stream(name=other, subjects=[f"{nats_prefix}.>"])

    _jetstream(nats_url, replace)
    try:
        deadline = time.monotonic() + 15
        refused: BrokerError | None = None
        while refused is None and time.monotonic() < deadline:
            try:
                subscription.receive(timeout=0.5)
            except IncompatibleTopic as exc:
                refused = exc
        assert refused is not None, "receive found nothing, and said nothing, for 15 s"
        assert consumer_name("orders", "billing") in str(refused)
        assert "cannot be made again" in str(refused)
    finally:
        delete_stream(nats_url, other)


@pytest.mark.parametrize("subscribed", [False, True])
def test_close_against_a_server_that_stopped_answering_ends_soon(
    nats: Callable[..., Any], nats_url: str, subscribed: bool, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = BlackHole(nats_address(nats_url))
    try:
        broker = nats(f"nats://127.0.0.1:{proxy.port}", reconnect_timeout=3)
        if subscribed:
            broker.subscribe("frozen", group="g")
        broker.publish("frozen", b"x")
        proxy.frozen.set()
        started = time.monotonic()
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            broker.close()
            took = time.monotonic() - started
            gc.collect()  # (a future nobody retrieved says so when collected)
        # It waits about 2 s for the server; nats-py's drain took 12 s.
        assert took < 8, f"close took {took:.1f} s against a server that stopped answering"
        assert "never retrieved" not in caplog.text, caplog.text
    finally:
        proxy.close()
