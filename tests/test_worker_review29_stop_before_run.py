"""A ``stop()`` made before the run began is kept for it (review 29): ``run()``
cleared the stop flag as it started, so ``stop()`` right after
``asyncio.create_task(worker.run())`` (the task not yet running) or after a thread's
``start()`` was lost, and the run went on for ever. The stop is consumed by the run it
ends: the next run runs."""

from __future__ import annotations

import asyncio
import threading

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
