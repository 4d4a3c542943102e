"""nats+core: a subscribe while the connection is down (review 31c), against a server of
the test's own, killed and restarted on its port.

It returned at once, before the server (down) had the interest: its flush was no round
trip while nats-py reconnected. It now waits for the connection (up to
``reconnect_timeout``) and returns once the server has the interest; past
``reconnect_timeout`` it raises ``ConnectionFailed`` and leaves no NATS subscription
behind.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import BrokerClosed, ConnectionFailed
from tests.nats_server import NatsServer

#: Seconds any wait here may take at most: the guard of a test that would hang.
GUARD = 20.0


@pytest.fixture
def server() -> Iterator[NatsServer]:
    server = NatsServer()
    try:
        yield server.start()
    finally:
        server.stop()


def _core(server: NatsServer, prefix: str, reconnect_timeout: float = 60) -> str:
    return (
        server.url.replace("nats://", "nats+core://", 1)
        + f"?prefix={prefix}&reconnect_timeout={reconnect_timeout}"
    )


async def _until(condition: Any, what: str) -> None:
    """Look at ``condition()`` until it holds, GUARD seconds at most."""
    deadline = time.monotonic() + GUARD
    while not condition():
        assert time.monotonic() < deadline, f"not {what} within {GUARD}s"
        await asyncio.sleep(0.02)


def _subscribed(nc: Any, subject: str) -> bool:
    """Whether nats-py has a subscription to ``subject`` (sent, or to send)."""
    return any(sub.subject == subject for sub in nc._subs.values())


def test_a_subscribe_while_the_server_is_down_returns_once_the_server_has_the_interest(
    server: NatsServer,
) -> None:
    prefix = f"r31c{uuid.uuid4().hex[:10]}"

    async def run() -> None:
        broker = await brokerkit.aio.connect(_core(server, prefix))
        try:
            await broker.publish("warm", "up")  # (the connection made)
            nc = broker._client._nc  # type: ignore[attr-defined]
            server.kill()
            await _until(lambda: not nc.is_connected, "disconnected")
            subscribing = asyncio.ensure_future(broker.subscribe("news"))
            await _until(lambda: _subscribed(nc, f"{prefix}.news"), "subscribing")
            assert not subscribing.done(), "subscribe returned while the server was down"
            await asyncio.to_thread(server.start)  # (it runs a loop of its own)
            subscription = await asyncio.wait_for(subscribing, GUARD)
            # Another connection publishes once subscribe returned: the server has the
            # interest, whether the subscriber's nats-py is still telling of its return.
            async with await brokerkit.aio.connect(_core(server, prefix)) as publisher:
                await publisher.publish("news", "after subscribe")
            delivery = await subscription.receive(timeout=GUARD)
            assert delivery is not None and delivery.body == "after subscribe"
        finally:
            await broker.close()

    asyncio.run(run())


def test_a_subscribe_while_the_server_stays_down_raises_after_reconnect_timeout(
    server: NatsServer,
) -> None:
    prefix = f"r31c{uuid.uuid4().hex[:10]}"

    async def run() -> None:
        broker = await brokerkit.aio.connect(_core(server, prefix, reconnect_timeout=1))
        try:
            await broker.publish("warm", "up")
            nc = broker._client._nc  # type: ignore[attr-defined]
            server.kill()
            await _until(lambda: not nc.is_connected, "disconnected")
            with pytest.raises(ConnectionFailed, match="reconnect_timeout=1"):
                await asyncio.wait_for(broker.subscribe("news"), GUARD)
            assert not _subscribed(nc, f"{prefix}.news"), "a NATS subscription was left"
        finally:
            await broker.close()

    asyncio.run(run())


def test_a_sync_subscribe_while_the_server_stays_down_raises_after_reconnect_timeout(
    server: NatsServer,
) -> None:
    prefix = f"r31c{uuid.uuid4().hex[:10]}"
    with brokerkit.connect(_core(server, prefix, reconnect_timeout=1)) as broker:
        broker.publish("warm", "up")
        server.kill()
        with pytest.raises(ConnectionFailed, match="reconnect_timeout=1"):
            broker.subscribe("news")


def test_a_subscribe_waiting_for_the_connection_ends_as_the_broker_closes(
    server: NatsServer,
) -> None:
    prefix = f"r31c{uuid.uuid4().hex[:10]}"

    async def run() -> None:
        broker = await brokerkit.aio.connect(_core(server, prefix))  # (60 s to reconnect)
        await broker.publish("warm", "up")
        nc = broker._client._nc  # type: ignore[attr-defined]
        server.kill()
        await _until(lambda: not nc.is_connected, "disconnected")
        subscribing = asyncio.ensure_future(broker.subscribe("news"))
        await _until(lambda: _subscribed(nc, f"{prefix}.news"), "subscribing")
        await asyncio.wait_for(broker.close(), GUARD)
        with pytest.raises(BrokerClosed):
            await asyncio.wait_for(subscribing, GUARD)

    asyncio.run(run())
