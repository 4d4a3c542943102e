"""A cancelled publish (docs/asyncio.md): on ``memory://`` its messages are never
stored (the cancellation comes before the store), and under the thread adapter the
publish goes on in its worker thread and stores them; either way the caller gets the
cancellation, and the broker works on."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable
from typing import Any, ClassVar, TypeVar

import pytest

import brokerkit.aio
from brokerkit.aio._threaded import threaded
from brokerkit.backends.memory import MemoryBroker

#: Seconds any wait here may take at most: a hang guard, never a pace.
GUARD = 20.0

_T = TypeVar("_T")


async def _guarded(call: Awaitable[_T]) -> _T:
    return await asyncio.wait_for(call, GUARD)


def _url() -> str:
    return f"memory://aio-review32-cancelled-publish-{uuid.uuid4().hex}"


@pytest.mark.parametrize("turns", [0, 1])
def test_a_publish_cancelled_on_memory_stores_nothing(turns: int) -> None:
    async def main() -> None:
        async with brokerkit.aio.connect(_url()) as broker:
            publishing = asyncio.create_task(broker.publish_many("t", [1, 2, 3]))
            for _ in range(turns):  # (1: cancelled where it lets the other tasks run)
                await asyncio.sleep(0)
            publishing.cancel()
            with pytest.raises(asyncio.CancelledError):
                await publishing
            assert (await broker.inspect("t")).length == 0
            await broker.publish("t", 4)
            assert (await broker.inspect("t")).length == 1

    asyncio.run(main())


class Gated(MemoryBroker):
    """A memory broker whose publish waits for the test's word in its worker thread."""

    entered: ClassVar[threading.Event]
    go_on: ClassVar[threading.Event]
    done: ClassVar[threading.Event]

    def _publish(self, topic: str, messages: Any) -> None:
        type(self).entered.set()
        assert type(self).go_on.wait(GUARD)
        super()._publish(topic, messages)
        type(self).done.set()


def test_a_publish_cancelled_in_its_worker_thread_goes_on_and_stores() -> None:
    Gated.entered, Gated.go_on, Gated.done = threading.Event(), threading.Event(), threading.Event()

    async def main() -> None:
        broker = await _guarded(threaded(Gated).open(_url()))
        try:
            publishing = asyncio.create_task(broker.publish_many("t", [1, 2]))
            assert await asyncio.to_thread(Gated.entered.wait, GUARD)
            publishing.cancel()
            with pytest.raises(asyncio.CancelledError):
                await publishing
            Gated.go_on.set()
            assert await asyncio.to_thread(Gated.done.wait, GUARD)
            assert (await _guarded(broker.inspect("t"))).length == 2
        finally:
            Gated.go_on.set()
            await _guarded(broker.close())

    asyncio.run(main())
