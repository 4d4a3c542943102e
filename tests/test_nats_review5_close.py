"""NATS: closing against a server that stopped answering ends in about 2 seconds,
prefetched deliveries or not (review 5, finding 2).

What a closing subscription hands back (``-NAK`` for what it fetched and never
returned) waits for the server a short while only: a hand-back nobody answers is
given up, its lease left to run out, as ``Broker.close`` says; it used to be retried
for the whole ``reconnect_timeout`` (32 s by default). The frozen server is a
:class:`~tests.proxies.BlackHole` in front of this test process's nats-server: it
keeps the connection open and forwards nothing, as a stopped process (SIGSTOP) or a
network that drops packets does.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

import brokerkit.aio
from tests.nats_server import nats, nats_address
from tests.proxies import BlackHole

__all__ = ["nats"]  # a fixture

#: Long enough that a hand-back retried for reconnect_timeout shows.
_RECONNECT_TIMEOUT = 10


@pytest.mark.parametrize("closing", ["broker", "subscription"])
def test_closing_with_prefetched_deliveries_against_a_frozen_server_ends_soon(
    nats: Callable[..., Any], nats_url: str, closing: str, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = BlackHole(nats_address(nats_url))
    try:
        broker = nats(
            f"nats://127.0.0.1:{proxy.port}",
            visibility_timeout=30,
            reconnect_timeout=_RECONNECT_TIMEOUT,
        )
        broker.publish_many("frozen", [{"i": i} for i in range(5)])
        subscription = broker.subscribe("frozen", group="g", prefetch=5)
        delivery = subscription.receive(timeout=5)  # fetches 5, returns 1: 4 to hand back
        assert delivery is not None
        proxy.frozen.set()
        started = time.monotonic()
        with caplog.at_level(logging.WARNING):
            if closing == "broker":
                broker.close()
            else:
                subscription.close()
            took = time.monotonic() - started
            gc.collect()  # (a future nobody retrieved says so when collected)
        assert took < 3.5, (
            f"closing the {closing} took {took:.1f} s against a server that stopped "
            "answering: about 2 s expected, not reconnect_timeout"
        )
        assert "could not hand back 4 delivery(ies)" in caplog.text
        assert "never retrieved" not in caplog.text, caplog.text
        if closing == "subscription":
            started = time.monotonic()
            broker.close()  # the server left the hand-back unanswered: not waited for long
            took = time.monotonic() - started
            assert took < 1.5, f"then closing the broker took {took:.1f} s"
    finally:
        proxy.close()


def test_closing_an_asyncio_broker_against_a_frozen_server_ends_soon(
    nats_url: str, nats_prefix: str
) -> None:
    """Two subscriptions with deliveries to hand back: the close waits about 2 s in
    all (what it hands back, then its flush), not 2 s each."""
    proxy = BlackHole(nats_address(nats_url))

    async def main() -> float:
        broker = await brokerkit.aio.connect(
            f"nats://127.0.0.1:{proxy.port}",
            prefix=nats_prefix,
            visibility_timeout=30,
            reconnect_timeout=_RECONNECT_TIMEOUT,
        )
        try:
            for topic in ("one", "two"):
                await broker.publish_many(topic, [1, 2, 3])
                subscription = await broker.subscribe(topic, group="g", prefetch=3)
                assert await subscription.receive(timeout=5) is not None
        finally:
            proxy.frozen.set()
            started = time.monotonic()
            await broker.close()
        return time.monotonic() - started

    try:
        took = asyncio.run(main())
        assert took < 3.5, f"close took {took:.1f} s against a server that stopped answering"
    finally:
        proxy.close()
