"""A worker in a long outage: each slot's pause after a failed receive doubles up to
MAX_PAUSE, and stays there however many receives fail. The count of failures grew
without end and the pause was ``POLL * 2**failures``: at the 1,024th failure in a row
(some 85 minutes of outage at 5 s a pause) that product overflowed a float, and every
slot logged "a slot failed and starts over: OverflowError ..." at ERROR, with a
traceback, and began its backoff again from half a second."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
import brokerkit.worker._runner
import brokerkit.worker._runner_async
from brokerkit.exceptions import ConnectionFailed
from tests.waiting import wait_until

DEADLINE = 30.0
#: Past the 1,024 failures in a row at which the pause overflowed.
FAILURES = 1100


class Outage:
    """Fetches that fail as a broker out of reach makes them fail, ``FAILURES`` in a
    row; then the server is back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.failures = 0
        self.over = threading.Event()

    def fail(self) -> None:
        """Raise while the outage lasts."""
        with self._lock:
            if self.failures < FAILURES:
                self.failures += 1
                if self.failures == FAILURES:
                    self.over.set()
                raise ConnectionFailed("the server is out of reach (an outage)")


def _slot_failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "a slot failed" in r.getMessage()]


def test_a_sync_slot_outlives_a_long_outage_without_an_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # the pauses are not what is tested: none, so that the failures come at once
    monkeypatch.setattr(brokerkit.worker._runner, "MAX_PAUSE", 0.0)
    caplog.set_level(logging.ERROR, "brokerkit.worker")  # not a warning per failure
    got: list[int] = []
    with brokerkit.connect("memory://") as broker:
        fetch, outage = broker._fetch, Outage()

        def failing(*args: Any) -> Any:
            outage.fail()
            return fetch(*args)

        monkeypatch.setattr(broker, "_fetch", failing)
        worker = brokerkit.Worker(broker)
        worker.handler("review32.outage")(got.append)
        with worker.running():
            wait_until(outage.over.is_set, "the outage's failures", within=DEADLINE)
            broker.publish("review32.outage", 1)
            wait_until(lambda: got == [1], "the message after the outage", within=DEADLINE)
        assert worker.drained
    assert _slot_failures(caplog) == []


def test_an_asyncio_slot_outlives_a_long_outage_without_an_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(brokerkit.worker._runner_async, "MAX_PAUSE", 0.0)
    caplog.set_level(logging.ERROR, "brokerkit.worker")
    got: list[int] = []

    async def main() -> None:
        async with brokerkit.aio.connect("memory://") as broker:
            fetch, outage = broker._fetch, Outage()

            async def failing(*args: Any) -> Any:
                outage.fail()
                return await fetch(*args)

            monkeypatch.setattr(broker, "_fetch", failing)
            worker = brokerkit.aio.Worker(broker)
            worker.handler("review32.outage")(got.append)
            async with worker.running():
                while not outage.over.is_set():
                    await asyncio.sleep(0.01)
                await broker.publish("review32.outage", 1)
                async with asyncio.timeout(DEADLINE):
                    while got != [1]:
                        await asyncio.sleep(0.01)
            assert worker.drained

    asyncio.run(main())
    assert _slot_failures(caplog) == []
