"""redis+pubsub publishes through a frozen server (failing, never hanging) and
through a restart (ridden out within ``reconnect_timeout``, as on the other Redis
backends)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import ConnectionFailed
from tests.redis_server import RedisServer

#: Far longer than a bounded publish takes: past it, the publish hangs.
HANG = 60.0


def _in_thread(call: Any) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize("counted", [False, True])
def test_a_publish_to_a_frozen_server_fails_instead_of_hanging(
    redis_server: RedisServer, counted: bool
) -> None:
    url = redis_server.url("redis+pubsub") + "?reconnect_timeout=1"
    with brokerkit.connect(url) as broker:
        broker.publish("frozen", "warm")
        redis_server.freeze()
        try:
            publish = broker.publish_counted if counted else broker.publish
            thread, outcome = _in_thread(lambda: publish("frozen", "x"))
            thread.join(HANG)
            assert not thread.is_alive(), "the publish hangs on a frozen server"
        finally:
            redis_server.thaw()
        assert isinstance(outcome[0], ConnectionFailed), outcome


def test_async_a_publish_to_a_frozen_server_fails_instead_of_hanging(
    redis_server: RedisServer,
) -> None:
    url = redis_server.url("redis+pubsub") + "?reconnect_timeout=1"

    async def main() -> None:
        async with await brokerkit.aio.connect(url) as broker:
            await broker.publish("frozen", "warm")
            redis_server.freeze()
            try:
                with pytest.raises(ConnectionFailed):
                    await asyncio.wait_for(broker.publish_counted("frozen", "x"), HANG)
            finally:
                redis_server.thaw()

    asyncio.run(main())


def test_a_publish_rides_out_a_restart_within_reconnect_timeout(
    redis_server: RedisServer,
) -> None:
    url = redis_server.url("redis+pubsub") + "?reconnect_timeout=30"
    with brokerkit.connect(url) as broker:
        broker.publish("restart", "warm")
        redis_server.kill()
        thread, outcome = _in_thread(lambda: broker.publish_counted("restart", "x"))
        time.sleep(2.5)  # the server stays down longer than a few quick retries last
        redis_server.start()
        thread.join(HANG)
        assert not thread.is_alive()
        assert not isinstance(outcome[0], BaseException), outcome
        assert outcome[0].receivers == 0


def test_async_a_publish_rides_out_a_restart_within_reconnect_timeout(
    redis_server: RedisServer,
) -> None:
    url = redis_server.url("redis+pubsub") + "?reconnect_timeout=30"

    async def main() -> None:
        async with await brokerkit.aio.connect(url) as broker:
            await broker.publish("restart", "warm")
            redis_server.kill()
            publish = asyncio.ensure_future(broker.publish_counted("restart", "x"))
            await asyncio.sleep(2.5)  # down longer than a few quick retries last
            await asyncio.to_thread(redis_server.start)
            published = await asyncio.wait_for(publish, HANG)
            assert published.receivers == 0

    asyncio.run(main())
