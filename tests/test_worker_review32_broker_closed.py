"""A worker whose broker is closed while it runs (thirty-second review of the worker):
each slot's receive raises BrokerClosed and the slot ends, so the run can handle
nothing any more. It went on all the same, saying nothing: ``run()`` never returned
(a thread running it never ended, a task never finished) until someone called
``stop()``. Now the run logs that its broker was closed, drains and returns."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

import brokerkit
import brokerkit.aio

DEADLINE = 10.0
TOPIC = "review32.closed"


def _told(caplog: pytest.LogCaptureFixture) -> bool:
    return any("was closed while it ran" in r.getMessage() for r in caplog.records)


def test_a_sync_run_ends_when_its_broker_is_closed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "brokerkit.worker")
    broker = brokerkit.connect("memory://")
    worker = brokerkit.Worker(broker)
    handled = threading.Event()
    worker.handler(TOPIC)(lambda body: handled.set())
    run = threading.Thread(target=worker.run, name="review32 worker run", daemon=True)
    run.start()
    try:
        assert worker.wait_ready(DEADLINE)
        broker.close()
        run.join(DEADLINE)
        assert not run.is_alive(), "run() went on after its broker was closed"
    finally:
        if run.is_alive():  # (a stop made after the run would be kept for the next)
            worker.stop()
            run.join(DEADLINE)
    assert worker.drained and worker.stopped_by is None
    assert _told(caplog)
    # the worker is free to run again, on an open broker
    with brokerkit.connect("memory://") as again:
        worker.broker = again
        with worker.running(timeout=DEADLINE):
            again.publish(TOPIC, 1)
            assert handled.wait(DEADLINE)


def test_an_asyncio_run_ends_when_its_broker_is_closed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "brokerkit.worker")

    async def main() -> None:
        broker = await brokerkit.aio.connect("memory://")
        worker = brokerkit.aio.Worker(broker)

        @worker.handler(TOPIC)
        async def handle(body: object) -> None:
            pass

        run = asyncio.create_task(worker.run())
        try:
            assert await worker.wait_ready(DEADLINE)
            await broker.close()
            done, _ = await asyncio.wait({run}, timeout=DEADLINE)
            assert run in done, "run() went on after its broker was closed"
            await run
        finally:
            if not run.done():
                worker.stop()
                await asyncio.wait({run}, timeout=DEADLINE)
        assert worker.drained and worker.stopped_by is None

    asyncio.run(main())
    assert _told(caplog)
