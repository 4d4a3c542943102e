"""The backoff of every Redis retry loop (building a cluster client, the Reconnector,
a pub/sub listener's resubscribe) is one helper whose exponent is capped: ``base *
2**attempt`` raised OverflowError past 1023 attempts. And a pub/sub listener that gives
up (ConnectionFailed) starts its backoff over with the window its next read opens: it
counted on across windows, so a subscriber that caught ConnectionFailed and kept
receiving through a long outage reached that overflow (after some 17 minutes)."""

from __future__ import annotations

import asyncio

import pytest

from brokerkit._url import BrokerURL
from brokerkit.backends.redis._connection import backoff_delay
from brokerkit.backends.redis.pubsub.listener import ChannelListener
from brokerkit.backends.redis.pubsub.listener_async import AsyncChannelListener
from brokerkit.exceptions import ConnectionFailed
from tests.redis_server import RedisServer


@pytest.mark.parametrize("attempt", [1, 10, 1023, 1024, 5000, 10**9])
def test_the_backoff_never_overflows(attempt: int) -> None:
    assert 0.0 <= backoff_delay(attempt, 0.05, 2.0) <= 2.0


def test_the_backoff_still_grows_to_its_cap() -> None:
    assert backoff_delay(1, 0.05, 2.0) <= 0.1
    assert max(backoff_delay(5000, 0.05, 2.0) for _ in range(200)) > 0.1


def _listener(kind: type, server: RedisServer) -> ChannelListener:
    listener: ChannelListener = kind(
        BrokerURL.parse(server.url("redis+pubsub")),
        b"review27b-backoff",
        pattern=False,
        topic="review27b-backoff",
        consumer="c",
        reconnect_timeout=0.0,  # every read of a lost connection gives up
        ping_interval=5.0,
    )
    return listener


def test_a_listener_that_gives_up_starts_its_backoff_over() -> None:
    with RedisServer() as server:
        listener = _listener(ChannelListener, server)
        listener.open()
        try:
            server.kill()
            given_up = 0
            while given_up < 3:
                try:
                    listener.read(10, 1.0)
                except ConnectionFailed:
                    given_up += 1
                    assert listener._attempt == 0, given_up  # counted on across windows
        finally:
            listener.close()


def test_an_asyncio_listener_that_gives_up_starts_its_backoff_over() -> None:
    async def main(server: RedisServer) -> None:
        listener = _listener(AsyncChannelListener, server)
        await listener.open()
        try:
            server.kill()
            given_up = 0
            while given_up < 3:
                try:
                    await listener.read(10, 1.0)
                except ConnectionFailed:
                    given_up += 1
                    assert listener._attempt == 0, given_up
        finally:
            await listener.close()

    with RedisServer() as server:
        asyncio.run(main(server))
