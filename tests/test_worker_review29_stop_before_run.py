"""A ``stop()`` made before the run began is kept for it (review 29): ``run()``
cleared the stop flag as it started, so ``stop()`` right after
``asyncio.create_task(worker.run())`` (the task not yet running) or after a thread's
``start()`` was lost, and the run went on for ever. The stop is consumed by the run it
ends: the next run runs."""

from __future__ import annotations

import asyncio
import threading
import time

import brokerkit
import brokerkit.aio

#: Bounds the waits for a run that ought to end at once; a run that ignored its stop
#: is stopped again after it, so that the test fails instead of hanging.
_WAIT = 10.0


def test_a_stop_before_the_sync_run_started_ends_it() -> None:
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        handled = threading.Event()

        @worker.handler("jobs")
        def job(body: object) -> None:
            handled.set()

        thread = threading.Thread(target=worker.run, daemon=True)
        worker.stop()
        thread.start()
        thread.join(_WAIT)
        lost = thread.is_alive()
        if lost:
            worker.stop()
            thread.join(_WAIT)
        assert not lost, "run() ignored the stop() made before it started"
        assert worker.drained

        # consumed by that run: the next one runs until stopped
        with worker.running():
            broker.publish("jobs", 1)
            assert handled.wait(_WAIT), "the stop was not consumed by the run it ended"


def test_a_stop_right_after_creating_the_asyncio_run_task_ends_it() -> None:
    async def main() -> None:
        async with brokerkit.aio.connect("memory://") as broker:
            worker = brokerkit.aio.Worker(broker)
            handled = asyncio.Event()

            @worker.handler("jobs")
            async def job(body: object) -> None:
                handled.set()

            task = asyncio.create_task(worker.run())
            worker.stop()  # the task has not started yet
            try:
                await asyncio.wait_for(asyncio.shield(task), _WAIT)
            except asyncio.TimeoutError:
                worker.stop()
                await task
                raise AssertionError("run() ignored the stop() made before it started") from None
            assert worker.drained

            # consumed by that run: the next one runs until stopped
            task = asyncio.create_task(worker.run())
            try:
                assert await worker.wait_ready(_WAIT)
                await broker.publish("jobs", 1)
                await asyncio.wait_for(handled.wait(), _WAIT)
            finally:
                worker.stop()
                await task

    asyncio.run(main())


# The end of a ``running()`` block stopped the worker whether or not its run was still
# going: once that run had ended (a handler called stop(), or the run raised), the stop
# was kept for the worker's next run, which drained at once and handled nothing.


def _wait_until_the_run_ended(worker: brokerkit.Worker) -> bool:
    """Whether the worker's run ended (its stop flags cleared) within _WAIT."""
    deadline = time.monotonic() + _WAIT
    while worker._running and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    return not worker._running


def test_a_running_block_whose_run_had_ended_leaves_the_next_run_alone() -> None:
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        seen: list[object] = []
        handled = threading.Event()

        @worker.handler("jobs")
        def job(body: object) -> None:
            seen.append(body)
            handled.set()
            if body == "quit":
                worker.stop()

        with worker.running():
            broker.publish("jobs", "quit")
            assert handled.wait(_WAIT)
            assert _wait_until_the_run_ended(worker)
        handled.clear()

        with worker.running():
            broker.publish("jobs", "second")
            assert handled.wait(_WAIT), "the next run drained at once: a stale stop"
        assert seen == ["quit", "second"]


def test_an_asyncio_running_block_whose_run_had_ended_leaves_the_next_run_alone() -> None:
    async def main() -> None:
        async with brokerkit.aio.connect("memory://") as broker:
            worker = brokerkit.aio.Worker(broker)
            seen: list[object] = []
            handled = asyncio.Event()

            @worker.handler("jobs")
            async def job(body: object) -> None:
                seen.append(body)
                handled.set()
                if body == "quit":
                    worker.stop(now=True)

            async with worker.running():
                await broker.publish("jobs", "quit")
                await asyncio.wait_for(handled.wait(), _WAIT)
                for _ in range(int(_WAIT / 0.01)):
                    if not worker._running:
                        break
                    await asyncio.sleep(0.01)
                assert not worker._running
            handled.clear()

            async with worker.running():
                await broker.publish("jobs", "second")
                await asyncio.wait_for(handled.wait(), _WAIT)
            assert seen == ["quit", "second"]
            assert worker.drained

    asyncio.run(main())


def test_a_running_block_left_before_its_run_began_still_stops_it() -> None:
    async def main() -> None:
        async with brokerkit.aio.connect("memory://") as broker:
            worker = brokerkit.aio.Worker(broker)

            @worker.handler("jobs")
            async def job(body: object) -> None:
                pass

            # timeout=0: the block starts (and ends) before the run's task has run
            async def block() -> None:
                async with worker.running(timeout=0):
                    pass

            await asyncio.wait_for(block(), _WAIT)
            assert not worker._running
            assert worker.drained

    asyncio.run(main())
