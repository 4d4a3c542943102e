"""NATS: a message whose handler thread the worker abandoned (its grace ran out) comes
back once that thread ends, within the ack wait, while the broker stays open: the
background renewal lets go of a lease whose delivery is marked settled without being
settled, under the sync API (where the worker holds the sync delivery over the
asyncio one) and under asyncio alike."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import brokerkit
import brokerkit.aio
from tests.nats_server import nats, nats_prefix, nats_url
from tests.waiting import wait_until

__all__ = ["nats", "nats_prefix", "nats_url"]  # fixtures

_VT = 1.0
#: How long the message may take to come back before the test gives up (a bound on a
#: failure, not a timing assertion: it comes back one ack wait after the thread ended).
_PATIENCE = 30.0


def _comes_back(other: Any, topic: str, message_id: str) -> None:
    """``other`` (the same group, another broker) is handed the message, at attempt
    2, while the broker whose worker abandoned it stays open."""
    subscription = other.subscribe(topic)
    deadline = time.monotonic() + _PATIENCE
    while True:
        assert time.monotonic() < deadline, (
            "the abandoned message never came back: its lease is still being renewed"
        )
        delivery = subscription.receive(timeout=0.2)
        if delivery is not None:
            break
    assert (delivery.id, delivery.attempt) == (message_id, 2)
    delivery.ack()
    subscription.close()


def test_an_abandoned_message_comes_back_once_its_thread_ends(
    nats: Callable[..., Any],
) -> None:
    broker, other = nats(visibility_timeout=_VT), nats(visibility_timeout=_VT)
    worker = brokerkit.Worker(broker, grace=0.2)
    started, release = threading.Event(), threading.Event()
    held: list[brokerkit.Delivery] = []

    @worker.handler("abandoned")
    def hangs(body: str, delivery: brokerkit.Delivery) -> None:
        held.append(delivery)
        started.set()
        release.wait(_PATIENCE)

    try:
        with worker.running():
            message_id = broker.publish("abandoned", "x")
            assert started.wait(_PATIENCE)
        assert not worker.drained, "the handler was abandoned"
        release.set()
        wait_until(lambda: held[0].settled, "the abandoned thread to end", within=_PATIENCE)
        _comes_back(other, "abandoned", message_id)
        assert not broker.closed
    finally:
        release.set()


def test_an_abandoned_message_comes_back_once_its_thread_ends_under_asyncio(
    nats_url: str, nats_prefix: str
) -> None:
    release = threading.Event()

    async def main() -> None:
        broker = await brokerkit.aio.connect(nats_url, prefix=nats_prefix, visibility_timeout=_VT)
        other = brokerkit.connect(nats_url, prefix=nats_prefix, visibility_timeout=_VT)
        try:
            worker = brokerkit.aio.Worker(broker, grace=0.2)
            started = threading.Event()
            held: list[brokerkit.aio.AsyncDelivery] = []

            @worker.handler("abandoned")
            def hangs(body: str, delivery: brokerkit.aio.AsyncDelivery) -> None:
                held.append(delivery)  # a plain function: it runs in a thread
                started.set()
                release.wait(_PATIENCE)

            async with worker.running():
                message_id = await broker.publish("abandoned", "x")
                deadline = time.monotonic() + _PATIENCE
                while not started.is_set():
                    assert time.monotonic() < deadline, "the handler never started"
                    await asyncio.sleep(0.01)
            assert not worker.drained, "the handler was abandoned"
            release.set()
            deadline = time.monotonic() + _PATIENCE
            while not held[0].settled:
                assert time.monotonic() < deadline, "the abandoned thread never ended"
                await asyncio.sleep(0.01)
            # The broker's renewals run on this loop: wait for the message elsewhere.
            await asyncio.to_thread(_comes_back, other, "abandoned", message_id)
            assert not broker.closed
        finally:
            release.set()
            other.close()
            await broker.close()

    asyncio.run(main())
