"""A hard stop that cut short an ack the broker had applied: the worker acks again, and
that second ack finds the lease gone (``StaleDelivery``). It logged "could not ack ...:
the lease ... expired ...; it was left to whichever consumer holds it now", a WARNING
about a message that was handled and is gone, and counted nothing (review 37, third
pass). It now says the first ack may have been applied, at INFO, and counts the
delivery processed: its handler succeeded."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.backends.memory import AsyncMemoryBroker

GUARD = 30.0


class AppliedThenHangs(AsyncMemoryBroker):
    """Applies its first ack, then never answers it (a reply lost on the way)."""

    entered: asyncio.Event
    hung = False

    async def _ack(self, deliveries: Any) -> None:
        await super()._ack(deliveries)
        if not self.hung:
            self.hung = True
            self.entered.set()
            await asyncio.Event().wait()


def test_a_reack_after_an_applied_ack_is_counted_processed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="brokerkit.worker")

    async def main() -> Any:
        url = brokerkit.BrokerURL.parse(f"memory://review37-{uuid.uuid4().hex}")
        async with AppliedThenHangs.from_url(url) as broker:
            broker.entered = asyncio.Event()
            worker = brokerkit.aio.Worker(broker, grace=0)

            @worker.handler("jobs")
            async def handle(body: object) -> None:
                return None

            await broker.publish("jobs", 1)
            run = asyncio.ensure_future(worker.run())
            await asyncio.wait_for(broker.entered.wait(), GUARD)
            worker.stop(now=True)
            await asyncio.wait_for(run, GUARD)
            return worker.stats()[0], await broker.inspect("jobs")

    stats, info = asyncio.run(main())
    assert (stats.processed, stats.failed) == (1, 0)
    assert info.in_flight == 0
    texts = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert not [t for level, t in texts if level >= logging.WARNING and "could not ack" in t]
    assert any(
        level == logging.INFO and "cut short by the hard stop, may have been applied" in t
        for level, t in texts
    ), texts
