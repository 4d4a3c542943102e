"""Under uvloop, an asyncio program that handles SIGTERM on its loop keeps that handling
once a worker's run has returned (as under asyncio's own loops: see
tests/test_aio_close_and_signals.py).

Before, the worker's run took SIGTERM with ``loop.add_signal_handler`` and could not
read the loop's own handler back (uvloop keeps its handlers out of reach; asyncio's
loops keep them in ``_signal_handlers``): its end removed the handler, and the
program's SIGTERM was never handled again (the default handling, or nothing). Now a
signal the loop handles where its handler cannot be read back is left to the program.
Skipped where uvloop is not installed."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

import brokerkit.aio

uvloop = pytest.importorskip("uvloop")

#: Seconds any wait here may take at most: a hang guard, never a pace.
GUARD = 20.0


@pytest.fixture
def program_handlers() -> Iterator[None]:
    """Whatever the test does to SIGINT and SIGTERM is undone afterwards."""
    saved = {n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)


@pytest.mark.usefixtures("program_handlers")
def test_worker_run_under_uvloop_leaves_the_loops_own_signal_handler() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        got = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, got.set)
        try:
            async with brokerkit.aio.connect("memory://") as broker:
                worker = brokerkit.aio.Worker(broker, grace=1)

                @worker.handler("signals")
                async def handle(body: Any) -> None:
                    pass

                running = asyncio.create_task(worker.run())
                assert await worker.wait_ready(GUARD)
                worker.stop()
                await asyncio.wait_for(running, GUARD)
            # Checked before sending: the default handling would end the test process.
            assert getattr(signal.getsignal(signal.SIGTERM), "__self__", None) is loop
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(got.wait(), GUARD)
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    uvloop.run(main())


@pytest.mark.usefixtures("program_handlers")
def test_worker_run_under_uvloop_still_stops_on_a_signal_nobody_handles() -> None:
    """Where the loop does not handle it, the run takes the signal as before."""

    async def main() -> None:
        async with brokerkit.aio.connect("memory://") as broker:
            worker = brokerkit.aio.Worker(broker, grace=1)

            @worker.handler("signals")
            async def handle(body: Any) -> None:
                pass

            running = asyncio.create_task(worker.run())
            assert await worker.wait_ready(GUARD)
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(running, GUARD)
            assert worker.stopped_by is not None

    uvloop.run(main())
