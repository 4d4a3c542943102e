"""A worker run to its end on a memory broker, and what the worker logs meanwhile: for
the tests of what a failing handler leaves (its dead letter, its log lines, its
traceback, its span)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.worker import RetryPolicy
from tests.waiting import wait_until

__all__ = ["DEADLINE", "WorkerLog", "dead_letter", "dead_lettered_async", "worker_log"]

#: Seconds a run may take to dead-letter its message: a hang guard, never a pace.
DEADLINE = 10.0


class WorkerLog(logging.Handler):
    """Keeps every record the ``brokerkit.worker`` logger logs (see :func:`worker_log`)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def lines(self) -> list[str]:
        """Each record's message."""
        return [record.getMessage() for record in self.records]

    def printed(self) -> str:
        """The records as the default formatter prints them (their tracebacks too)."""
        return "\n".join(logging.Formatter().format(r) for r in self.records)


@pytest.fixture
def worker_log() -> Iterator[WorkerLog]:
    """What the worker logs during the test, at every level."""
    handler = WorkerLog()
    logger = logging.getLogger("brokerkit.worker")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def dead_letter(
    topic: str,
    handler: Callable[..., Any],
    body: Any,
    *,
    retry: RetryPolicy | None = None,
    serializer: str = "json",
) -> brokerkit.Delivery:
    """``body`` published to ``topic`` of a memory broker and handled by ``handler``
    under a sync worker (with ``retry``) until it is dead-lettered; its dead letter,
    acked."""
    with brokerkit.connect("memory://", serializer=serializer) as broker:
        worker = brokerkit.Worker(broker)
        worker.handler(topic, retry=retry)(handler)
        broker.publish(topic, body)
        with worker.running():
            wait_until(lambda: worker.stats()[0].dead_lettered == 1, "the dead letter", DEADLINE)
        (dead,) = broker.consume(broker.dead_letter_topic(topic), timeout=0)
        dead.ack()
    return dead


def dead_lettered_async(
    topic: str, handler: Callable[..., Any], body: Any, *, retry: RetryPolicy | None = None
) -> None:
    """:func:`dead_letter` under an asyncio worker (``handler`` a coroutine function),
    in an event loop of its own; returns once the message is dead-lettered."""

    async def main() -> None:
        async with brokerkit.aio.connect("memory://") as broker:
            worker = brokerkit.aio.Worker(broker)
            worker.handler(topic, retry=retry)(handler)
            await broker.publish(topic, body)
            async with worker.running():
                deadline = time.monotonic() + DEADLINE
                while worker.stats()[0].dead_lettered < 1:
                    assert time.monotonic() < deadline, "timed out waiting for the dead letter"
                    await asyncio.sleep(0.02)  # polling with a deadline

    asyncio.run(main())
