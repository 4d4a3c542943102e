"""The thread adapter's open, cancelled while its worker thread builds the sync broker:
the broker built after all is closed, not leaked."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any, ClassVar

import pytest

from brokerkit.aio._threaded import threaded
from brokerkit.backends.memory import MemoryBroker

#: Seconds any wait of these tests may take at most: a hang guard, never a pace.
GUARD = 30.0


class Gated(MemoryBroker):
    """A memory broker whose building waits for the test's word, as a backend whose
    constructor connects (kombu's) takes its time; it says when it was built and
    when closed."""

    started: ClassVar[threading.Event]
    release: ClassVar[threading.Event]
    built_event: ClassVar[threading.Event]
    closed_event: ClassVar[threading.Event]
    built: ClassVar[list[MemoryBroker]]

    @classmethod
    def reset(cls) -> None:
        cls.started, cls.release = threading.Event(), threading.Event()
        cls.built_event, cls.closed_event = threading.Event(), threading.Event()
        cls.built = []

    @classmethod
    def from_url(cls, url: Any, **options: Any) -> Gated:
        cls.started.set()
        assert cls.release.wait(GUARD)
        broker = super().from_url(url, **options)
        assert isinstance(broker, Gated)
        cls.built.append(broker)
        cls.built_event.set()
        return broker

    def _close(self) -> None:
        super()._close()
        type(self).closed_event.set()


@pytest.fixture
def gated() -> type[Gated]:
    Gated.reset()
    return Gated


def _url() -> str:
    return f"memory://threaded-cancel-{uuid.uuid4().hex}"


def test_a_broker_built_after_its_open_was_cancelled_is_closed(gated: type[Gated]) -> None:
    async def main() -> None:
        opening = asyncio.create_task(threaded(gated).open(_url()))
        assert await asyncio.to_thread(gated.started.wait, GUARD)  # building, in a thread
        opening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await opening
        gated.release.set()  # the worker thread goes on and builds it after all
        assert await asyncio.to_thread(gated.closed_event.wait, GUARD)

    asyncio.run(main())
    assert len(gated.built) == 1 and gated.built[0].closed


def test_a_broker_built_as_its_open_is_cancelled_is_closed(gated: type[Gated]) -> None:
    """The build ends while the cancellation is on its way: whichever side sees the
    other first, the broker is closed once."""

    async def main() -> None:
        opening = asyncio.create_task(threaded(gated).open(_url()))
        assert await asyncio.to_thread(gated.started.wait, GUARD)
        # Built while the loop is held here, so the task cannot take the broker before
        # it is cancelled; the worker thread returns it meanwhile, or soon after.
        gated.release.set()
        assert gated.built_event.wait(GUARD)
        assert opening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await opening
        assert await asyncio.to_thread(gated.closed_event.wait, GUARD)

    asyncio.run(main())
    assert len(gated.built) == 1 and gated.built[0].closed


def test_an_open_not_cancelled_hands_over_an_open_broker(gated: type[Gated]) -> None:
    async def main() -> None:
        gated.release.set()
        broker = await asyncio.wait_for(threaded(gated).open(_url()), GUARD)
        try:
            assert not broker.sync.closed
            await broker.publish("t", "x")
            assert (await broker.inspect("t")).length == 1
        finally:
            await broker.close()

    asyncio.run(main())
    assert gated.built[0].closed
