"""A worker whose handlers could not subscribe (the broker does not answer) raises,
and its log does not say it ran: before, ``run()`` logged "worker stopped (drained)"
just before the error, so ``brokerkit worker`` printed that line above "could not
connect to Redis", as if the worker had run and drained."""

from __future__ import annotations

import asyncio
import logging

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import BrokerError

# port 1: nothing listens there
_URL = "redis+stream://127.0.0.1:1/0?reconnect_timeout=0.2"


def _worker_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "brokerkit.worker"]


def test_a_worker_that_could_not_start_never_says_it_drained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="brokerkit.worker")
    with brokerkit.connect(_URL) as broker:
        worker = brokerkit.Worker(broker)

        @worker.handler("jobs")
        def job(body: object) -> None:
            pass

        with pytest.raises(BrokerError):
            worker.run()
    lines = _worker_lines(caplog)
    assert not any("stopped" in line for line in lines), lines
    assert not worker.drained


def test_an_asyncio_worker_that_could_not_start_never_says_it_drained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="brokerkit.worker")

    async def main() -> brokerkit.aio.Worker:
        broker = await brokerkit.aio.connect(_URL)
        worker = brokerkit.aio.Worker(broker)

        @worker.handler("jobs")
        async def job(body: object) -> None:
            pass

        try:
            with pytest.raises(BrokerError):
                await worker.run()
        finally:
            await broker.close()
        return worker

    worker = asyncio.run(main())
    lines = _worker_lines(caplog)
    assert not any("stopped" in line for line in lines), lines
    assert not worker.drained
