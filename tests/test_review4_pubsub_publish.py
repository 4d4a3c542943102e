"""redis+pubsub publishes through a frozen server (failing, never hanging) and
through a restart (ridden out within ``reconnect_timeout``, as on the other Redis
backends)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import ConnectionFailed
from tests.redis_server import RedisServer

#: Far longer than a bounded publish takes: past it, the publish hangs.
HANG = 60.0
#: How many failed sends (the server down) a publish must have ridden out, and so
#: retried, before the test brings the server back.
REFUSED = 2


class _Sends:
    """Counts the failed and the answered sends of a broker's publishes: wraps its
    ``_send`` (what the broker's Reconnector calls again after a failure), passing
    every call through to the real one."""

    def __init__(self, send: Callable[..., Any]) -> None:
        self.send = send
        self.failed = 0
        self.answered = 0

    def __call__(self, commands: Any) -> Any:
        try:
            replies = self.send(commands)
        except Exception:
            self.failed += 1
            raise
        self.answered += 1
        return replies


class _AsyncSends(_Sends):
    async def __call__(self, commands: Any) -> Any:
        try:
            replies = await self.send(commands)
        except Exception:
            self.failed += 1
            raise
        self.answered += 1
        return replies


def _until(condition: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + HANG
    while not condition():
        assert time.monotonic() < end, f"not within {HANG} s: {what}"
        time.sleep(0.01)


async def _async_until(condition: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + HANG
    while not condition():
        assert time.monotonic() < end, f"not within {HANG} s: {what}"
        await asyncio.sleep(0.01)


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
        sends = _Sends(broker._send)  # type: ignore[attr-defined]
        broker._send = sends  # type: ignore[attr-defined]
        redis_server.kill()
        thread, outcome = _in_thread(lambda: broker.publish_counted("restart", "x"))
        _until(
            lambda: sends.failed >= REFUSED or not thread.is_alive(),
            "the publish failed and was retried",
        )
        assert thread.is_alive(), outcome  # still retrying, not given up
        assert sends.answered == 0
        redis_server.start()
        thread.join(HANG)
        assert not thread.is_alive()
        assert not isinstance(outcome[0], BaseException), outcome
        assert outcome[0].receivers == 0
        assert sends.answered == 1


def test_async_a_publish_rides_out_a_restart_within_reconnect_timeout(
    redis_server: RedisServer,
) -> None:
    url = redis_server.url("redis+pubsub") + "?reconnect_timeout=30"

    async def main() -> None:
        async with await brokerkit.aio.connect(url) as broker:
            await broker.publish("restart", "warm")
            sends = _AsyncSends(broker._send)  # type: ignore[attr-defined]
            broker._send = sends  # type: ignore[attr-defined]
            redis_server.kill()
            publish = asyncio.ensure_future(broker.publish_counted("restart", "x"))
            await _async_until(
                lambda: sends.failed >= REFUSED or publish.done(),
                "the publish failed and was retried",
            )
            assert not publish.done(), publish  # still retrying, not given up
            assert sends.answered == 0
            await asyncio.to_thread(redis_server.start)
            published = await asyncio.wait_for(publish, HANG)
            assert published.receivers == 0
            assert sends.answered == 1

    asyncio.run(main())
