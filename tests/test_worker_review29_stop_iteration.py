"""A plain handler that raises StopIteration under the asyncio worker fails as any
other error does (review 29): ``next(iter([]))`` in a handler's thread left its slot
waiting for ever, since asyncio refuses a StopIteration as a future's exception (the
loop logged "StopIteration interacts badly with generators"): the delivery was never
settled, its lease renewed as long as the process ran, and the slot never took another
message. It is now a RuntimeError from it (as a coroutine's StopIteration becomes),
retried and dead-lettered under the policy, as under the sync worker."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import brokerkit
import brokerkit.aio

_WAIT = 10.0


def test_a_plain_handlers_stop_iteration_is_its_failure_under_the_asyncio_worker() -> None:
    async def main() -> tuple[str, Any]:
        async with brokerkit.aio.connect("memory://", max_deliveries=2) as broker:
            worker = brokerkit.aio.Worker(broker, grace=1)
            reasons: list[str] = []
            dead = asyncio.Event()

            @worker.handler("jobs")
            def first_line(body: list[str]) -> None:
                next(iter(body))  # an empty body: StopIteration

            @worker.handler(broker.dead_letter_topic("jobs"))
            async def buried(body: object, delivery: brokerkit.aio.AsyncDelivery) -> None:
                reasons.append(delivery.headers["x-dead-letter-reason"])
                dead.set()

            async with worker.running():
                await broker.publish("jobs", [])
                try:
                    await asyncio.wait_for(dead.wait(), _WAIT)
                except asyncio.TimeoutError:
                    pytest.fail(f"never settled: {worker.stats()[0]}")
            return reasons[0], worker.stats()[0]

    reason, stats = asyncio.run(main())
    assert reason == "RuntimeError: the handler raised StopIteration"
    assert (stats.failed, stats.retried, stats.dead_lettered, stats.in_flight) == (2, 1, 1, 0)


def test_the_sync_worker_fails_it_as_well() -> None:
    with brokerkit.connect("memory://", max_deliveries=2) as broker:
        worker = brokerkit.Worker(broker)
        reasons: list[str] = []
        dead = threading.Event()

        @worker.handler("jobs")
        def first_line(body: list[str]) -> None:
            next(iter(body))

        @worker.handler(broker.dead_letter_topic("jobs"))
        def buried(body: object, delivery: brokerkit.Delivery) -> None:
            reasons.append(delivery.headers["x-dead-letter-reason"])
            dead.set()

        with worker.running():
            broker.publish("jobs", [])
            assert dead.wait(_WAIT)
    assert reasons[0].startswith("StopIteration")
