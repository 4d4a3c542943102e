"""A coroutine handler cancelled by a hard stop counts as failed (review 37): its
delivery is nacked with an attempt counted and is counted as retried (or
dead-lettered), which the counters define as failed deliveries, so it is counted as
failed too. Before, the final status said ``failed=0 retried=3``; and at its last
attempt, dead-lettered, it logged nothing about the message."""

from __future__ import annotations

import asyncio
import logging

import pytest

import brokerkit.aio
from brokerkit.worker import Immediate, StatsSnapshot
from tests.waiting import wait_until_async

GUARD = 60.0


@pytest.mark.parametrize("attempts", [None, 1], ids=["retried", "dead-lettered"])
def test_a_cancelled_handler_counts_as_failed(
    attempts: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="brokerkit.worker")

    async def main() -> tuple[StatsSnapshot, list[str]]:
        async with brokerkit.aio.connect("memory://") as broker:
            worker = brokerkit.aio.Worker(broker, grace=0)

            @worker.handler("r37-hang", concurrency=3, retry=Immediate(max_attempts=attempts))
            async def hang(body: int) -> None:
                await asyncio.Event().wait()

            ids = [await broker.publish("r37-hang", n) for n in range(3)]
            async with worker.running():
                await wait_until_async(
                    lambda: worker.stats()[0].in_flight == 3, "three handlers running", GUARD
                )
            assert not worker.drained
            return worker.stats()[0], ids

    stats, ids = asyncio.run(main())
    assert stats.failed == 3, stats
    if attempts is None:
        assert (stats.retried, stats.dead_lettered) == (3, 0), stats
        return
    assert (stats.retried, stats.dead_lettered) == (0, 3), stats
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 3, [r.getMessage() for r in errors]
    for record, message_id in zip(
        sorted(errors, key=lambda r: str(getattr(r, "message_id", ""))), sorted(ids), strict=True
    ):
        text = record.getMessage()
        assert f"cancelled by a hard stop of the worker on {message_id} " in text, text
        assert "(topic 'r37-hang', attempt 1 of 1), dead-lettered" in text, text
