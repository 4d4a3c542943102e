"""redis+pubsub's connections against redis-py's ``max_connections`` cap, and a
subscribe to a server never reached.

A subscription owns a connection of its own and the broker keeps one for publishing:
neither counts against the URL's ``max_connections``, which caps the pool that
``inspect`` and concurrent publishes draw from; a publish that finds the cap reached
waits for a connection instead of failing.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis.pubsub import Gap
from brokerkit.exceptions import ConnectionFailed
from tests.redis_server import RedisServer

WAIT = 5.0


def _until_gap(subscription: brokerkit.Subscription, gaps: list[Gap], count: int) -> None:
    for _ in range(200):
        if len(gaps) >= count:
            return
        subscription.receive(timeout=0.1)
    pytest.fail(f"gap {count} was never reported")


@pytest.mark.parametrize("cap", [1, 2, 3])
def test_a_subscription_outlives_more_reconnects_than_max_connections(
    redis_server: RedisServer, cap: int
) -> None:
    gaps: list[Gap] = []
    client = redis_server.client()
    url = redis_server.url("redis+pubsub") + f"?max_connections={cap}"
    with brokerkit.connect(url, on_gap=gaps.append) as broker:
        subscription = broker.subscribe("capped")
        for kill in range(1, cap + 3):
            assert client.client_kill_filter(_type="pubsub") == 1
            _until_gap(subscription, gaps, kill)
            assert broker.publish_counted("capped", kill).receivers == 1
            delivery = subscription.receive(timeout=WAIT)
            assert delivery is not None and delivery.body == kill
    client.close()


@pytest.mark.parametrize("cap", [1, 2])
def test_publishes_and_inspect_share_max_connections_without_failing(
    redis_server: RedisServer, cap: int
) -> None:
    url = redis_server.url("redis+pubsub") + f"?max_connections={cap}"
    with brokerkit.connect(url) as broker:
        subscription = broker.subscribe("capped")
        broker.publish("capped", "first")
        assert broker.inspect("capped").details["subscribers"] == 1
        errors: list[BaseException] = []

        def publish() -> None:
            try:
                for i in range(100):
                    broker.publish("capped", i)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=publish) for _ in range(4)]
        for thread in threads:
            thread.start()
        assert broker.inspect("capped").details["subscribers"] == 1
        for thread in threads:
            thread.join()
        assert errors == []
        received = 0
        while subscription.receive(timeout=WAIT if received < 401 else 0.1) is not None:
            received += 1
        assert received == 401


def test_async_publishes_and_inspect_share_max_connections_without_failing(
    redis_server: RedisServer,
) -> None:
    url = redis_server.url("redis+pubsub") + "?max_connections=1"

    async def main() -> None:
        async with await brokerkit.aio.connect(url) as broker:
            await broker.publish("capped", "first")
            assert (await broker.inspect("capped")).details["subscribers"] == 0

            async def publish() -> None:
                for i in range(50):
                    await broker.publish("capped", i)

            await asyncio.gather(*(publish() for _ in range(4)), broker.inspect("capped"))

    asyncio.run(asyncio.wait_for(main(), 60))


# -- a server never reached ------------------------------------------------------------


@pytest.fixture
def slammer() -> Iterator[tuple[int, list[int]]]:
    """A port whose listener accepts each connection and closes it at once (no Redis
    ever answers there), and the count of connections it took, in a list."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = [0]
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted[0] += 1
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join()
        listener.close()


def test_subscribe_to_a_server_never_reached_fails_at_the_first_attempt(
    slammer: tuple[int, list[int]],
) -> None:
    port, accepted = slammer
    url = f"redis+pubsub://127.0.0.1:{port}/0?reconnect_timeout=3"
    with brokerkit.connect(url) as broker, pytest.raises(ConnectionFailed, match="could not"):
        broker.subscribe("never")
    assert accepted[0] == 1


def test_async_subscribe_to_a_server_never_reached_fails_at_the_first_attempt(
    slammer: tuple[int, list[int]],
) -> None:
    port, accepted = slammer

    async def main() -> Any:
        url = f"redis+pubsub://127.0.0.1:{port}/0?reconnect_timeout=3"
        async with await brokerkit.aio.connect(url) as broker:
            with pytest.raises(ConnectionFailed, match="could not connect"):
                await broker.subscribe("never")

    asyncio.run(asyncio.wait_for(main(), 60))
    assert accepted[0] == 1
