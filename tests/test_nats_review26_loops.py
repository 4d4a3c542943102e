"""NATS: an asyncio broker shared by threads that each run their own event loop
(review 26, bug 2), as docs/asyncio.md promises of every asyncio broker.

nats-py runs the connection on the loop that opened it. A call from another loop
used to wait there for replies resolved from the connection's loop without waking
it: each call sat out a try's timeout (2 s; here made an hour, so that the test fails
on its guard rather than on a clock). Once the connection's loop ended (its thread's
``asyncio.run`` returned, nats-py's tasks with it), every call failed with
ConnectionFailed after ``reconnect_timeout``, a publish having stored its message
all the same. Calls now run on the connection's loop, and a connection whose loop
has ended is let go and opened again on the caller's.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

import brokerkit.aio
from brokerkit.backends.nats import _client

#: Seconds any wait of these tests may take at most: a hang guard, never a pace.
GUARD = 20.0

_T = TypeVar("_T")


@pytest.fixture(autouse=True)
def _no_retry_within_the_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_client, "_TRY_TIMEOUT", 3600.0)


async def _guarded(call: Awaitable[_T]) -> _T:
    return await asyncio.wait_for(call, GUARD)


class LoopThread:
    """A thread running an event loop of its own (``asyncio.run``) that opens the
    broker's connection, then runs until :meth:`end`."""

    def __init__(self, broker: brokerkit.aio.AsyncBroker) -> None:
        self.ready = threading.Event()
        self._end = threading.Event()
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, args=(broker,))
        self._thread.start()
        assert self.ready.wait(GUARD)
        assert self.failure is None, self.failure

    def _serve(self, broker: brokerkit.aio.AsyncBroker) -> None:
        async def run() -> None:
            try:
                await _guarded(broker.publish("jobs", "from the first loop"))
            except BaseException as exc:
                self.failure = exc
            finally:
                self.ready.set()
            await asyncio.to_thread(self._end.wait, GUARD)

        asyncio.run(run())

    def end(self) -> None:
        self._end.set()
        self._thread.join(GUARD)
        assert not self._thread.is_alive()


@pytest.fixture
def broker(nats_url: str, nats_prefix: str) -> Iterator[brokerkit.aio.AsyncBroker]:
    async def connect() -> brokerkit.aio.AsyncBroker:
        return await brokerkit.aio.connect(nats_url, prefix=nats_prefix, reconnect_timeout=5)

    made = asyncio.run(connect())
    try:
        yield made
    finally:
        asyncio.run(_guarded(made.close()))


def _in_a_loop(work: Callable[[], Awaitable[_T]]) -> _T:
    async def run() -> _T:
        return await work()

    return asyncio.run(run())


async def _round_trip(broker: brokerkit.aio.AsyncBroker, body: str) -> Any:
    """Publish ``body`` and receive, ack, what the group has first."""
    await _guarded(broker.publish("jobs", body))
    subscription = await _guarded(broker.subscribe("jobs", group="g"))
    delivery = await _guarded(subscription.receive(timeout=GUARD))
    assert delivery is not None
    await _guarded(delivery.ack())
    await _guarded(subscription.close())
    return delivery.body


def test_calls_from_a_second_loop_are_answered(broker: brokerkit.aio.AsyncBroker) -> None:
    first = LoopThread(broker)
    try:

        async def second() -> list[Any]:
            bodies = [await _round_trip(broker, "from the second loop") for _ in range(2)]
            assert (await _guarded(broker.inspect("jobs"))).length == 3
            return bodies

        assert _in_a_loop(second) == ["from the first loop", "from the second loop"]
    finally:
        first.end()


def test_the_broker_works_on_after_the_loop_that_connected_it_ended(
    broker: brokerkit.aio.AsyncBroker,
) -> None:
    async def main() -> None:
        first = LoopThread(broker)
        # Made (and its pulls set up) while the first loop runs the connection:
        subscription = await _guarded(broker.subscribe("jobs", group="g"))
        await asyncio.to_thread(first.end)
        await _guarded(broker.publish("jobs", "after the first loop ended"))
        assert (await _guarded(broker.inspect("jobs"))).length == 2  # (once each)
        for body in ["from the first loop", "after the first loop ended"]:
            delivery = await _guarded(subscription.receive(timeout=GUARD))
            assert delivery is not None and delivery.body == body
            await _guarded(delivery.ack())
        await _guarded(subscription.close())

    _in_a_loop(main)
