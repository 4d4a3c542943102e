"""A handler registered while the worker runs is refused (review 29): it was accepted,
listed in ``handlers`` and ``stats()``, and never called, since a run serves the
handlers it started with; its messages waited unseen. ``set_concurrency`` during a run
changed nothing either. Both now raise InvalidOption; after the run they work again."""

from __future__ import annotations

import asyncio
import threading

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import InvalidOption

_WAIT = 10.0


def test_registering_while_the_sync_worker_runs_is_refused() -> None:
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)

        @worker.handler("orders")
        def first(body: object) -> None: ...

        with worker.running():
            with pytest.raises(
                InvalidOption, match=r"register handler \S*late while the worker is running"
            ):

                @worker.handler("refunds")
                def late(body: object) -> None: ...

            with pytest.raises(InvalidOption, match="change the concurrency while the worker"):
                worker.set_concurrency(4)
        assert [spec.function for spec in worker.handlers] == [first]
        assert [spec.concurrency for spec in worker.handlers] == [1]

        # between runs, both work, and the next run serves the new handler
        handled = threading.Event()

        @worker.handler("refunds")
        def late_but_before_the_run(body: object) -> None:
            handled.set()

        worker.set_concurrency(2)
        with worker.running():
            broker.publish("refunds", 1)
            assert handled.wait(_WAIT)


def test_registering_while_the_asyncio_worker_runs_is_refused() -> None:
    async def main() -> None:
        async with brokerkit.aio.connect("memory://") as broker:
            worker = brokerkit.aio.Worker(broker)

            @worker.handler("orders")
            async def first(body: object) -> None: ...

            async with worker.running():
                with pytest.raises(InvalidOption, match=r"register handler \S*late while"):

                    @worker.handler("refunds")
                    async def late(body: object) -> None: ...

                with pytest.raises(InvalidOption, match="change the concurrency while"):
                    worker.set_concurrency(4)
            assert [spec.function for spec in worker.handlers] == [first]

            handled = asyncio.Event()

            @worker.handler("refunds")
            async def late_but_before_the_run(body: object) -> None:
                handled.set()

            async with worker.running():
                await broker.publish("refunds", 1)
                await asyncio.wait_for(handled.wait(), _WAIT)

    asyncio.run(main())
