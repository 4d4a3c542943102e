"""Closing a Redis broker ends its calls that retry against a lost server (review 30).

With the server gone (killed: every reconnection refused), a publish, an inspect or a
subscribe under way retries with backoff for ``reconnect_timeout`` seconds. The close
did not tell them: a redis+pubsub subscribe held the close for the 5 s it waits for
the subscribes under way, then went on retrying long after the close returned, as
did a redis+stream or redis+list publish and a redis+list inspect (about a minute with
``reconnect_timeout=60``). Now the broker's close wakes them as it begins (the core's
``_wake_waits`` hook): a subscribe raises ``BrokerClosed``, the others
``ConnectionFailed``, at once.

``reconnect_timeout`` is made longer than the test's guard, and so is the close's wait
for the subscribes under way, so that a call the close does not wake fails the guard.
A call is known to be retrying once it asks for its backoff (the spy below, on the
pure function each retry loop asks).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

import brokerkit
import brokerkit._broker
import brokerkit._broker_async
import brokerkit.aio
import brokerkit.backends.redis._client
import brokerkit.backends.redis._client_async
import brokerkit.backends.redis.pubsub.resubscribing
import brokerkit.backends.redis.pubsub.resubscribing_async
from brokerkit.backends.redis import _connection
from brokerkit.exceptions import BrokerClosed, ConnectionFailed
from tests.redis_server import RedisServer
from tests.waiting import call_in_thread

#: Seconds any wait here may take at most: the guard of a test that would hang.
GUARD = 15.0
#: Beyond the guard: a retry nobody wakes outlasts it.
RECONNECT = "120"

_RETRYING_MODULES = (
    brokerkit.backends.redis._client,
    brokerkit.backends.redis._client_async,
    brokerkit.backends.redis.pubsub.resubscribing,
    brokerkit.backends.redis.pubsub.resubscribing_async,
)


@pytest.fixture
def retrying(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set once a retry loop asks for its backoff (a call failed and will retry); the
    close's wait for the subscribes under way made 60 s (beyond the guard)."""
    asked = threading.Event()

    def spy(attempt: int, base: float, cap: float) -> float:
        asked.set()
        return _connection.backoff_delay(attempt, base, cap)

    for module in _RETRYING_MODULES:
        monkeypatch.setattr(module, "backoff_delay", spy)
    monkeypatch.setattr(brokerkit._broker, "_SUBSCRIBE_WAIT", 60.0)
    monkeypatch.setattr(brokerkit._broker_async, "_SUBSCRIBE_WAIT", 60.0)
    return asked


#: (scheme, call, what it raises once the close woke it)
CASES: list[tuple[str, str, type[Exception]]] = [
    ("redis+stream", "publish", ConnectionFailed),
    ("redis+stream", "subscribe", BrokerClosed),
    ("redis+list", "publish", ConnectionFailed),
    ("redis+list", "inspect", ConnectionFailed),
    ("redis+list", "purge", ConnectionFailed),
    ("redis+pubsub", "subscribe", BrokerClosed),
    ("redis+pubsub", "publish", ConnectionFailed),
]


def call_of(broker: Any, call: str, topic: str) -> Callable[[], Any]:
    """``broker``'s ``call`` (publish, subscribe, or another of one topic) of ``topic``,
    ready to call: on a broker of the asyncio API, it returns the awaitable."""
    if call == "publish":
        return lambda: broker.publish(topic, "late")
    if call == "subscribe":
        group = "g" if broker.url.scheme in ("redis+stream", "nats") else None
        return lambda: broker.subscribe(topic, group=group)
    return lambda: getattr(broker, call)(topic)


@pytest.mark.parametrize(("scheme", "call", "raises"), CASES)
def test_sync_close_ends_a_call_retrying_against_a_lost_server(
    redis_server: RedisServer,
    prefix: str,
    retrying: threading.Event,
    scheme: str,
    call: str,
    raises: type[Exception],
) -> None:
    url = f"{redis_server.url(scheme)}?prefix={prefix}&reconnect_timeout={RECONNECT}"
    broker = brokerkit.connect(url)
    try:
        broker.inspect("jobs")  # the server was reached: its loss is ridden out
        redis_server.kill()
        caller, raised = call_in_thread(call_of(broker, call, "jobs"))
        assert retrying.wait(GUARD), f"the {call} did not retry"
        closer = threading.Thread(target=broker.close, daemon=True)
        closer.start()
        closer.join(GUARD)
        assert not closer.is_alive(), f"the close waited for the {call}"
        caller.join(GUARD)
        assert not caller.is_alive(), f"the {call} went on retrying after the close"
        assert len(raised) == 1, raised
        assert isinstance(raised[0], raises), repr(raised[0])
    finally:
        broker.close()


@pytest.mark.parametrize(("scheme", "call", "raises"), CASES)
def test_async_close_ends_a_call_retrying_against_a_lost_server(
    redis_server: RedisServer,
    prefix: str,
    retrying: threading.Event,
    scheme: str,
    call: str,
    raises: type[Exception],
) -> None:
    url = f"{redis_server.url(scheme)}?prefix={prefix}&reconnect_timeout={RECONNECT}"

    async def scenario() -> None:
        broker = await brokerkit.aio.connect(url)
        try:
            await broker.inspect("jobs")
            redis_server.kill()
            task = asyncio.ensure_future(call_of(broker, call, "jobs")())
            assert await asyncio.to_thread(retrying.wait, GUARD), f"the {call} did not retry"
            await asyncio.wait_for(asyncio.shield(broker.close()), GUARD)
            done, _ = await asyncio.wait((task,), timeout=GUARD)
            assert done, f"the {call} went on retrying after the close"
            error = task.exception()
            assert isinstance(error, raises), repr(error)
        finally:
            await asyncio.wait_for(broker.close(), GUARD)

    asyncio.run(scenario())
