"""Closing a redis+pubsub broker cuts short a receive that resubscribes to a frozen
server (review 31).

A receive whose connection was lost reconnects within its read; the close did not
wake that: the subscription's close waits for the receive under way, and against a
server that accepts connections but never answers (SIGSTOP'd: the kernel still
completes the TCP handshake) the connection attempt waited out its socket timeout
in redis-py's handshake, holding the close as long. Now the close halts the
reconnecting (the subscription's wake-up, and the broker's close signal): no further
attempt, the wait between two woken, and the connection being made cut (its socket
shut down, from the closing thread); the receive raises ``BrokerClosed``.

The socket timeout is made longer than the test's guard. The receive is known to be
reconnecting once the listener makes a connection again (a spy on the factory it
asks); the close may begin before that connection has a socket to cut, which the
connection's handshake then refuses to go on with.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
import brokerkit.backends.redis.pubsub.resubscribing
import brokerkit.backends.redis.pubsub.resubscribing_async
from brokerkit.backends.redis import _connection
from brokerkit.exceptions import BrokerClosed
from tests.redis_server import RedisServer
from tests.waiting import call_in_thread

#: Seconds any wait here may take at most: the guard of a test that would hang.
GUARD = 15.0
#: Beyond the guard: what nobody cuts short waits it out.
LONG = "120"


@pytest.fixture
def reconnecting(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set once a listener makes a connection (after the test clears it: a
    reconnection)."""
    made = threading.Event()

    def spy(pool: Any) -> Any:
        conn = _connection.unpooled_connection(pool)
        made.set()
        return conn

    for module in (
        brokerkit.backends.redis.pubsub.resubscribing,
        brokerkit.backends.redis.pubsub.resubscribing_async,
    ):
        monkeypatch.setattr(module, "unpooled_connection", spy)
    return made


def _url(server: RedisServer, prefix: str) -> str:
    return (
        f"{server.url('redis+pubsub')}?prefix={prefix}&reconnect_timeout={LONG}"
        f"&socket_timeout={LONG}"
    )


def _lose_and_freeze(server: RedisServer) -> None:
    """Drop the subscriber's connection (the server closes it), then freeze the server."""
    client = server.client()
    try:
        assert client.client_kill_filter(_type="pubsub") >= 1
    finally:
        client.close()
    server.freeze()


def test_sync_close_cuts_a_receive_reconnecting_to_a_frozen_server(
    redis_server: RedisServer, prefix: str, reconnecting: threading.Event
) -> None:
    broker = brokerkit.connect(_url(redis_server, prefix))
    try:
        subscription = broker.subscribe("jobs")
        _lose_and_freeze(redis_server)
        reconnecting.clear()
        receiver, raised = call_in_thread(lambda: subscription.receive(timeout=GUARD * 4))
        assert reconnecting.wait(GUARD), "the receive did not reconnect"
        closer = threading.Thread(target=broker.close, daemon=True)
        closer.start()
        closer.join(GUARD)
        assert not closer.is_alive(), "the close waited out the reconnection"
        receiver.join(GUARD)
        assert not receiver.is_alive(), "the receive went on after the close"
        assert len(raised) == 1, raised
        assert isinstance(raised[0], BrokerClosed), repr(raised[0])
    finally:
        redis_server.thaw()
        broker.close()


def test_async_close_cuts_a_receive_reconnecting_to_a_frozen_server(
    redis_server: RedisServer, prefix: str, reconnecting: threading.Event
) -> None:
    async def scenario() -> None:
        broker = await brokerkit.aio.connect(_url(redis_server, prefix))
        try:
            subscription = await broker.subscribe("jobs")
            await asyncio.to_thread(_lose_and_freeze, redis_server)
            reconnecting.clear()
            task = asyncio.ensure_future(subscription.receive(timeout=GUARD * 4))
            assert await asyncio.to_thread(reconnecting.wait, GUARD), "no reconnection"
            await asyncio.wait_for(asyncio.shield(broker.close()), GUARD)
            done, _ = await asyncio.wait((task,), timeout=GUARD)
            assert done, "the receive went on after the close"
            error = task.exception()
            assert isinstance(error, BrokerClosed), repr(error)
        finally:
            redis_server.thaw()
            await asyncio.wait_for(broker.close(), GUARD)

    asyncio.run(scenario())
