"""redis+pubsub reads that take what has arrived before judging anything: a receive
with ``timeout=0`` (polling) gets the messages already in the socket, an answer to a
PING that waited in the socket while the application was away keeps the connection
alive, and a gap starts where the subscription last heard from Redis.

Sync and asyncio, through hiredis and through redis-py's own parser.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis._parsers import _AsyncRESP2Parser

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis.pubsub import Gap
from tests.redis_server import RedisServer
from tests.test_redis_pubsub_reading import _use_the_python_parser

WAIT = 5.0
PING = 0.2  # a short ping_interval, so that the keep-alive acts within the test


@pytest.fixture(params=["hiredis", "python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which parser the subscriber connections read with, on both sides."""
    if request.param == "python":
        _use_the_python_parser(monkeypatch)
        _use_the_python_parser(monkeypatch, aioredis.ConnectionPool, _AsyncRESP2Parser)
    return str(request.param)


def _away(seconds: float) -> None:
    """The application does something else for ``seconds`` (not a synchronization:
    the time away is the condition under test)."""
    time.sleep(seconds)


def _poll(subscription: brokerkit.Subscription, count: int) -> list[Any]:
    """Poll with ``receive(timeout=0)`` until ``count`` messages came (or fail)."""
    bodies: list[Any] = []
    end = time.monotonic() + WAIT
    while len(bodies) < count:
        assert time.monotonic() < end, f"polling got {bodies}, not {count} messages"
        delivery = subscription.receive(timeout=0)
        if delivery is not None:
            bodies.append(delivery.body)
        else:
            _away(0.01)
    return bodies


@pytest.mark.parametrize("count", [1, 3, 50])
def test_polling_with_timeout_0_gets_what_has_arrived_and_keeps_a_healthy_connection(
    redis_server: RedisServer, parser: str, count: int
) -> None:
    gaps: list[Gap] = []
    url = redis_server.url("redis+pubsub") + f"?ping_interval={PING}"
    with brokerkit.connect(url, on_gap=gaps.append) as broker:
        subscription = broker.subscribe("poll")
        assert [broker.publish_counted("poll", i).receivers for i in range(count)] == [1] * count
        assert _poll(subscription, count) == list(range(count))
        # Polling on through several ping intervals of silence: still alive, no gap.
        end = time.monotonic() + 4 * PING
        while time.monotonic() < end:
            assert subscription.receive(timeout=0) is None
            _away(0.02)
        assert broker.publish_counted("poll", "later").receivers == 1
        assert _poll(subscription, 1) == ["later"]
        assert gaps == []


@pytest.mark.parametrize(
    ("timeout", "away"), [(0, 1.5 * PING), (0, 4 * PING), (PING, 2 * PING), (2.5 * PING, 3 * PING)]
)
def test_an_answered_ping_waiting_in_the_socket_keeps_the_connection_and_its_messages(
    redis_server: RedisServer, parser: str, timeout: float, away: float
) -> None:
    gaps: list[Gap] = []
    url = redis_server.url("redis+pubsub") + f"?ping_interval={PING}"
    with brokerkit.connect(url, on_gap=gaps.append) as broker:
        subscription = broker.subscribe("away")
        _away(PING)  # silent for a ping interval: the next read PINGs
        assert subscription.receive(timeout=timeout) is None
        assert [broker.publish_counted("away", i).receivers for i in range(5)] == [1] * 5
        _away(away)  # the application works meanwhile; the PONG and messages wait
        bodies = []
        while (
            delivery := subscription.receive(timeout=WAIT if len(bodies) < 5 else 0.1)
        ) is not None:
            bodies.append(delivery.body)
        assert bodies == [0, 1, 2, 3, 4]
        assert gaps == []


def test_a_gap_starts_no_later_than_the_loss(redis_server: RedisServer, parser: str) -> None:
    gaps: list[Gap] = []
    client = redis_server.client()
    with brokerkit.connect(redis_server.url("redis+pubsub"), on_gap=gaps.append) as broker:
        subscription = broker.subscribe("gap")
        broker.publish("gap", "before")
        delivery = subscription.receive(timeout=WAIT)
        assert delivery is not None and delivery.body == "before"
        killed_at = time.time()
        assert client.client_kill_filter(_type="pubsub") == 1
        _away(0.3)  # the loss is noticed only when the subscription is read again
        end = time.monotonic() + 20
        while not gaps:
            assert time.monotonic() < end, "no gap was reported"
            subscription.receive(timeout=0.2)
        gap = gaps[0]
        # Whatever was published after lost_at may be lost; nothing before it was.
        assert gap.lost_at <= killed_at <= gap.noticed_at <= gap.resumed_at
        assert gap.duration == gap.resumed_at - gap.lost_at
    client.close()


# -- asyncio ---------------------------------------------------------------------------


def _run(coroutine: Any) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coroutine, 60)

    return asyncio.run(bounded())


def test_async_polling_with_timeout_0_gets_what_has_arrived(
    redis_server: RedisServer, parser: str
) -> None:
    async def main() -> None:
        gaps: list[Gap] = []
        url = redis_server.url("redis+pubsub") + f"?ping_interval={PING}"
        async with await brokerkit.aio.connect(url, on_gap=gaps.append) as broker:
            subscription = await broker.subscribe("poll")
            for i in range(3):
                assert (await broker.publish_counted("poll", i)).receivers == 1
            bodies: list[Any] = []
            end = time.monotonic() + WAIT
            while len(bodies) < 3 or time.monotonic() < end - WAIT + 4 * PING:
                assert time.monotonic() < end, f"polling got {bodies}"
                delivery = await subscription.receive(timeout=0)
                if delivery is not None:
                    bodies.append(delivery.body)
                await asyncio.sleep(0.02)  # the application's own loop
            assert bodies == [0, 1, 2]
            assert gaps == []

    _run(main())


@pytest.mark.parametrize(("timeout", "away"), [(0, 4 * PING), (PING, 2 * PING)])
def test_async_an_answered_ping_waiting_in_the_socket_keeps_the_connection(
    redis_server: RedisServer, parser: str, timeout: float, away: float
) -> None:
    async def main() -> None:
        gaps: list[Gap] = []
        url = redis_server.url("redis+pubsub") + f"?ping_interval={PING}"
        async with await brokerkit.aio.connect(url, on_gap=gaps.append) as broker:
            subscription = await broker.subscribe("away")
            await asyncio.sleep(PING)
            assert await subscription.receive(timeout=timeout) is None
            for i in range(5):
                assert (await broker.publish_counted("away", i)).receivers == 1
            await asyncio.sleep(away)
            bodies = []
            while (
                delivery := await subscription.receive(timeout=WAIT if len(bodies) < 5 else 0.1)
            ) is not None:
                bodies.append(delivery.body)
            assert bodies == [0, 1, 2, 3, 4]
            assert gaps == []

    _run(main())
