"""An asyncio NATS broker belongs to the event loop that first uses it (nats-py reads
its connection, and resolves every reply, on that loop): a call from another loop is
refused at once with ``Unsupported`` (docs/asyncio.md, docs/backends/nats.md). Before,
such a call waited a try's timeout (2 s) for each reply, resolved without waking its
loop, and once the first loop had ended failed with ``ConnectionFailed`` after
``reconnect_timeout``, a publish having stored its message all the same."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import warnings
from collections.abc import Awaitable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

import brokerkit.aio
from brokerkit.backends.nats import _client
from brokerkit.exceptions import Unsupported

#: Seconds any wait here may take at most: a hang guard, never a pace.
GUARD = 20.0

_T = TypeVar("_T")


@pytest.fixture(autouse=True)
def _no_retry_within_the_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wait for a reply that never wakes its loop fails on the guard, not on a clock."""
    monkeypatch.setattr(_client, "_TRY_TIMEOUT", 3600.0)


async def _guarded(call: Awaitable[_T]) -> _T:
    return await asyncio.wait_for(call, GUARD)


class FirstLoop:
    """A thread running an event loop of its own, where the broker is made and first
    used; :meth:`run` runs a coroutine there, :meth:`end` ends the loop."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever)
        self._thread.start()

    def run(self, work: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(_guarded(work), self._loop).result(GUARD)

    def end(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(GUARD)
        assert not self._thread.is_alive()
        self._loop.close()


@pytest.fixture
def first_loop(nats_url: str, nats_prefix: str) -> Iterator[tuple[FirstLoop, Any]]:
    loop = FirstLoop()

    async def connect() -> brokerkit.aio.AsyncBroker:
        broker = await brokerkit.aio.connect(nats_url, prefix=nats_prefix, reconnect_timeout=5)
        await broker.publish("jobs", "from the first loop")
        return broker

    broker = loop.run(connect())
    try:
        yield loop, broker
    finally:
        try:
            loop.run(broker.close())
        finally:
            loop.end()


def test_a_call_from_another_loop_is_refused_at_once(
    first_loop: tuple[FirstLoop, brokerkit.aio.AsyncBroker],
) -> None:
    loop, broker = first_loop

    async def elsewhere() -> None:
        with pytest.raises(Unsupported, match="open one broker per event loop"):
            await _guarded(broker.publish("jobs", "from the second loop"))
        with pytest.raises(Unsupported, match="open one broker per event loop"):
            await _guarded(broker.inspect("jobs"))

    asyncio.run(elsewhere())
    # nothing of the refused publish was sent; the first loop goes on as before
    assert loop.run(broker.inspect("jobs")).length == 1
    loop.run(broker.publish("jobs", "again from the first loop"))
    assert loop.run(broker.inspect("jobs")).length == 2


def test_a_receive_from_another_loop_is_refused_and_leaves_the_subscription_whole(
    first_loop: tuple[FirstLoop, brokerkit.aio.AsyncBroker],
) -> None:
    loop, broker = first_loop
    subscription = loop.run(broker.subscribe("jobs", group="g"))

    async def elsewhere() -> None:
        with pytest.raises(Unsupported, match="open one broker per event loop"):
            await _guarded(subscription.receive(timeout=1))

    asyncio.run(elsewhere())

    async def at_home() -> str:
        delivery = await subscription.receive(timeout=GUARD)
        assert delivery is not None
        await delivery.ack()
        return str(delivery.body)

    assert loop.run(at_home()) == "from the first loop"


def test_a_close_from_another_loop_closes_the_broker_on_its_own(
    nats_url: str, nats_prefix: str
) -> None:
    loop = FirstLoop()
    try:

        async def connect() -> brokerkit.aio.AsyncBroker:
            broker = await brokerkit.aio.connect(nats_url, prefix=nats_prefix)
            await broker.publish("jobs", "from the first loop")
            return broker

        broker = loop.run(connect())
        connection = broker._client._nc  # type: ignore[attr-defined]
        asyncio.run(_guarded(broker.close()))
        assert connection.is_closed  # closed on its own loop, which still runs
    finally:
        loop.end()


def test_a_close_after_the_first_loop_ended_drops_the_connection(
    nats_url: str, nats_prefix: str
) -> None:
    loop = FirstLoop()

    async def connect() -> brokerkit.aio.AsyncBroker:
        broker = await brokerkit.aio.connect(nats_url, prefix=nats_prefix)
        await broker.publish("jobs", "from the first loop")
        return broker

    broker = loop.run(connect())
    connection = broker._client._nc  # type: ignore[attr-defined]
    loop.end()
    asyncio.run(_guarded(broker.close()))
    assert connection.is_closed  # marked closed: it cannot reconnect
    assert broker._client._nc is None  # type: ignore[attr-defined]
    # nats-py's tasks and transport ended pending with their loop, as they do for an
    # application whose loop ends before its broker's close: collected here, where
    # what their finalizers raise (that loop is closed) is expected, not in a later test.
    del broker, connection, loop
    _collect_what_a_closed_loop_left()


def _collect_what_a_closed_loop_left() -> None:
    left: list[str] = []
    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: left.append(repr(unraisable.exc_value))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
    finally:
        sys.unraisablehook = hook
    assert all("Event loop is closed" in text for text in left), left
