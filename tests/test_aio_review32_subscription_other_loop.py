"""A subscription received from another thread's event loop while a receive of its own
loop waits (docs/asyncio.md: a subscription belongs to the loop it was made on) raises
a RuntimeError at once that says so. Before, the second receive waited for the first's
lock, whose release set its future from the other thread without waking its loop: it
waited for ever, past its own timeout (on the memory broker shared between threads, and
on a backend run through the thread adapter)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable
from typing import TypeVar

import pytest

import brokerkit.aio
from brokerkit.aio import AsyncBroker, AsyncSubscription
from brokerkit.aio._threaded import threaded
from brokerkit.backends.memory import MemoryBroker

#: Seconds any wait here may take at most: a hang guard, never a pace.
GUARD = 20.0

_T = TypeVar("_T")


async def _guarded(call: Awaitable[_T]) -> _T:
    return await asyncio.wait_for(call, GUARD)


async def _open(kind: str) -> AsyncBroker:
    url = f"memory://aio-review32-other-loop-{uuid.uuid4().hex}"
    if kind == "native":
        return await brokerkit.aio.connect(url)
    return await threaded(MemoryBroker).open(url)


def _receive_on_another_loop(subscription: AsyncSubscription) -> BaseException | object:
    """What a receive of ``subscription`` on a new loop in a thread of its own gives:
    its exception, or its result."""
    outcome: list[BaseException | object] = []

    def run() -> None:
        async def receive() -> object:
            return await _guarded(subscription.receive(GUARD))

        try:
            outcome.append(asyncio.run(receive()))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(2 * GUARD)
    assert outcome, "the thread's receive never ended"
    return outcome[0]


@pytest.mark.parametrize("kind", ["native", "threaded"])
def test_a_receive_from_another_loop_beside_a_waiting_one_is_refused(kind: str) -> None:
    async def main() -> None:
        broker = await _open(kind)
        try:
            subscription = await _guarded(broker.subscribe("t", group="g"))
            waiting = asyncio.create_task(subscription.receive(GUARD))
            while not subscription._fetching.locked():  # its receive holds the lock
                await asyncio.sleep(0)
            outcome = await asyncio.to_thread(_receive_on_another_loop, subscription)
            assert isinstance(outcome, RuntimeError), outcome
            assert "belongs to the event loop it was made on" in str(outcome)
            # The subscription is whole: its own loop's receive gets the message.
            await _guarded(broker.publish("t", "x"))
            delivery = await _guarded(waiting)
            assert delivery is not None and delivery.body == "x"
            await _guarded(delivery.ack())
        finally:
            await _guarded(broker.close())

    asyncio.run(main())


def test_a_receive_from_another_loop_with_none_waiting_works_as_before() -> None:
    """Free, the lock is taken from any loop: a memory broker's subscription received
    on from another thread's loop, when nothing else receives, gets its message."""

    async def main() -> None:
        broker = await _open("native")
        try:
            subscription = await _guarded(broker.subscribe("t", group="g"))
            await _guarded(broker.publish("t", "x"))
            outcome = await asyncio.to_thread(_receive_on_another_loop, subscription)
            assert not isinstance(outcome, BaseException), outcome
        finally:
            await _guarded(broker.close())

    asyncio.run(main())
