"""Stopping a worker (twenty-sixth review of the worker): a grace too long for a
thread's wait, and whether the drain finished when no handler was running."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import brokerkit
import brokerkit.aio

#: Every wait in these tests polls with this deadline; none is a sleep.
DEADLINE = 10.0

# -- a grace longer than a thread waits --------------------------------------------------


@pytest.mark.parametrize("grace", [float("inf"), 1e10, threading.TIMEOUT_MAX * 2])
def test_running_takes_any_grace_the_worker_accepts(grace: float) -> None:
    """``threading.Event.wait`` refuses a timeout beyond ``threading.TIMEOUT_MAX``; the
    end of ``running()`` waited ``grace + timeout`` in one wait (OverflowError)."""
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker, grace=grace)
        handled = threading.Event()

        @worker.handler("jobs")
        def job(body: Any) -> None:
            handled.set()

        broker.publish("jobs", 1)
        with worker.running():
            assert handled.wait(DEADLINE)
        assert worker.drained
        assert worker.stats()[0].processed == 1


@pytest.mark.parametrize("grace", [float("inf"), 1e10])
def test_the_asyncio_workers_running_takes_any_grace_too(grace: float) -> None:
    async def main() -> brokerkit.aio.Worker:
        async with brokerkit.aio.connect("memory://") as broker:
            worker = brokerkit.aio.Worker(broker, grace=grace)

            handled = asyncio.Event()

            @worker.handler("jobs")
            async def job(body: Any) -> None:
                handled.set()

            async with worker.running():
                await broker.publish("jobs", 1)
                await handled.wait()  # bounded by the wait_for below
            return worker

    worker = asyncio.run(asyncio.wait_for(main(), DEADLINE))
    assert worker.drained
