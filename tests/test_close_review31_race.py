"""A call that passed the open check just before the close began, and reaches its retry
loop only after the close's wake-up, gives up at once too (review 31).

The retry loops told the close's own calls (its hand-backs, which must retry as before)
by their starting after the close began: a publish, inspect or subscribe of another
thread (or task) that passed ``_check_open`` just before the close and reached its loop
just after was taken for one of them, and retried against the lost server for the whole
``reconnect_timeout`` (Redis: the Reconnector; NATS: the request mux and the wait for
the connection); a subscribe held the close for as long as it waits for the subscribes
under way. Now the close marks its own calls (``brokerkit._close_calls``), and any
other call that fails once the close has begun gives up at once: ``ConnectionFailed``,
or ``BrokerClosed`` for a subscribe.

The race is made certain: the backend primitive of the call (``_publish``...) is
wrapped so that, as it is entered (the open check passed), the close is started and
its wake-up waited for; then the primitive runs against a server that is gone (killed,
or behind a proxy that refuses every connection), so the call is certainly in its
retry loop. ``reconnect_timeout`` and the close's wait for the subscribes under way are
made longer than the test's guard.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import brokerkit
import brokerkit._broker
import brokerkit._broker_async
import brokerkit.aio
from brokerkit.exceptions import BrokerClosed, ConnectionFailed
from tests.nats_server import nats_address
from tests.redis_server import RedisServer
from tests.test_nats_review30_core_close_publish import _Cuttable, _Lost, lost
from tests.test_redis_review30_close_wakes_retries import call_of
from tests.waiting import call_in_thread

__all__ = ["lost"]  # fixture

#: Seconds any wait here may take at most: the guard of a test that would hang.
GUARD = 15.0
#: Beyond the guard: a retry nobody ends outlasts it.
RECONNECT = "120"


@pytest.fixture(autouse=True)
def long_subscribe_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """The close's wait for the subscribes under way, 60 s (beyond the guard)."""
    monkeypatch.setattr(brokerkit._broker, "_SUBSCRIBE_WAIT", 60.0)
    monkeypatch.setattr(brokerkit._broker_async, "_SUBSCRIBE_WAIT", 60.0)


#: The primitive each call enters once its open check has passed.
PRIMITIVES = {"publish": "_publish", "subscribe": "_subscribe", "inspect": "_inspect"}

#: (scheme, call, what it raises)
REDIS_CASES: list[tuple[str, str, type[Exception]]] = [
    ("redis+stream", "publish", ConnectionFailed),
    ("redis+stream", "subscribe", BrokerClosed),
    ("redis+list", "publish", ConnectionFailed),
    ("redis+list", "inspect", ConnectionFailed),
    ("redis+pubsub", "subscribe", BrokerClosed),
]


def _close_first_sync(broker: Any, call: str) -> threading.Thread:
    """Make ``call``'s primitive start the close (in a thread) and wait for its
    wake-up before it runs; the closing thread."""
    woke = threading.Event()
    wake = broker._wake_waits

    def noting() -> None:
        wake()
        woke.set()

    closer = threading.Thread(target=broker.close, daemon=True)
    name = PRIMITIVES[call]
    primitive = getattr(broker, name)

    def entered(*args: Any) -> Any:
        closer.start()
        assert woke.wait(GUARD), "the close did not begin"
        return primitive(*args)

    broker._wake_waits = noting
    setattr(broker, name, entered)
    return closer


def _close_first_async(broker: Any, call: str) -> list[asyncio.Future[None]]:
    """:func:`_close_first_sync` under asyncio: the close a task; in the list returned
    once started."""
    woke = asyncio.Event()
    wake = broker._wake_waits
    closing: list[asyncio.Future[None]] = []

    def noting() -> None:
        wake()
        woke.set()

    name = PRIMITIVES[call]
    primitive = getattr(broker, name)

    async def entered(*args: Any) -> Any:
        closing.append(asyncio.ensure_future(broker.close()))
        await asyncio.wait_for(woke.wait(), GUARD)
        return await primitive(*args)

    broker._wake_waits = noting
    setattr(broker, name, entered)
    return closing


def _run_sync(broker: Any, call: str, raises: type[Exception]) -> None:
    closer = _close_first_sync(broker, call)
    caller, raised = call_in_thread(call_of(broker, call, "jobs"))
    caller.join(GUARD)
    assert not caller.is_alive(), f"the {call} went on retrying after the close began"
    closer.join(GUARD)
    assert not closer.is_alive(), f"the close waited for the {call}"
    assert len(raised) == 1, raised
    assert isinstance(raised[0], raises), repr(raised[0])


async def _run_async(broker: Any, call: str, raises: type[Exception]) -> None:
    closing = _close_first_async(broker, call)
    run: Callable[[], Awaitable[Any]] = call_of(broker, call, "jobs")
    task = asyncio.ensure_future(run())
    done, _ = await asyncio.wait((task,), timeout=GUARD)
    assert done, f"the {call} went on retrying after the close began"
    assert closing, "the close was not started"
    await asyncio.wait_for(asyncio.shield(closing[0]), GUARD)
    error = task.exception()
    assert isinstance(error, raises), repr(error)


@pytest.mark.parametrize(("scheme", "call", "raises"), REDIS_CASES)
def test_redis_sync_call_reaching_its_retries_after_the_close_began_gives_up(
    redis_server: RedisServer, prefix: str, scheme: str, call: str, raises: type[Exception]
) -> None:
    url = f"{redis_server.url(scheme)}?prefix={prefix}&reconnect_timeout={RECONNECT}"
    broker = brokerkit.connect(url)
    try:
        broker.inspect("jobs")  # the server was reached: its loss is ridden out
        redis_server.kill()
        _run_sync(broker, call, raises)
    finally:
        broker.close()


@pytest.mark.parametrize(("scheme", "call", "raises"), REDIS_CASES)
def test_redis_async_call_reaching_its_retries_after_the_close_began_gives_up(
    redis_server: RedisServer, prefix: str, scheme: str, call: str, raises: type[Exception]
) -> None:
    url = f"{redis_server.url(scheme)}?prefix={prefix}&reconnect_timeout={RECONNECT}"

    async def scenario() -> None:
        broker = await brokerkit.aio.connect(url)
        try:
            await broker.inspect("jobs")
            redis_server.kill()
            await _run_async(broker, call, raises)
        finally:
            await asyncio.wait_for(broker.close(), GUARD)

    asyncio.run(scenario())


def test_nats_sync_subscribe_reaching_its_wait_after_the_close_began_gives_up(
    nats_url: str, nats_prefix: str, lost: _Lost
) -> None:
    proxy = _Cuttable(nats_address(nats_url))
    try:
        url = f"nats://127.0.0.1:{proxy.port}?prefix={nats_prefix}&reconnect_timeout={RECONNECT}"
        broker = brokerkit.connect(url)
        try:
            broker.publish("jobs", "made the stream")
            proxy.cut()
            assert lost.lost.wait(GUARD), "the connection was not lost"
            _run_sync(broker, "subscribe", BrokerClosed)
        finally:
            broker.close()
    finally:
        proxy.close()


def test_nats_async_subscribe_reaching_its_wait_after_the_close_began_gives_up(
    nats_url: str, nats_prefix: str, lost: _Lost
) -> None:
    proxy = _Cuttable(nats_address(nats_url))
    url = f"nats://127.0.0.1:{proxy.port}?prefix={nats_prefix}&reconnect_timeout={RECONNECT}"

    async def scenario() -> None:
        broker = await brokerkit.aio.connect(url)
        try:
            await broker.publish("jobs", "made the stream")
            proxy.cut()
            assert await asyncio.to_thread(lost.lost.wait, GUARD), "the connection was not lost"
            await _run_async(broker, "subscribe", BrokerClosed)
        finally:
            await asyncio.wait_for(broker.close(), GUARD)

    try:
        asyncio.run(scenario())
    finally:
        proxy.close()
