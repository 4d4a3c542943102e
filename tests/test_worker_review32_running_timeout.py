"""The timeout of ``worker.running()`` and ``wait_ready()`` (thirty-second review of
the worker). ``running(timeout=None)``, the "no limit" that ``wait_ready`` takes, or a
str, raised a bare TypeError from inside the block's start, after the worker had begun
to run in the background: it went on running there, handling the topic's messages,
stopped by nobody, and every later ``running()`` of it said it was already running.
NaN or a negative timeout did not wait for the handlers to be subscribed at all. Now a
bad timeout raises InvalidOption before anything runs, and None waits without limit."""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import InvalidOption

DEADLINE = 10.0
TOPIC = "review32.running"
BAD = {"a str": "5", "NaN": math.nan, "negative": -1, "a bool": True, "a list": [5]}


@pytest.mark.parametrize("timeout", list(BAD.values()), ids=list(BAD))
def test_a_bad_timeout_is_refused_before_the_worker_runs(timeout: Any) -> None:
    got: list[int] = []
    done = threading.Event()
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)

        @worker.handler(TOPIC)
        def handle(body: int) -> None:
            got.append(body)
            done.set()

        refused = pytest.raises(InvalidOption, match=r"running\(timeout=\.\.\.\) must be a")
        with refused, worker.running(timeout=timeout):
            pytest.fail("the block ran")
        # Nothing runs in the background: the same worker runs again, and handles what
        # was published meanwhile.
        broker.publish(TOPIC, 1)
        with worker.running(timeout=DEADLINE):
            assert done.wait(DEADLINE)
        assert worker.drained and got == [1]


def test_running_without_a_timeout_waits_without_limit() -> None:
    done = threading.Event()
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker, grace=10**400)  # an int too large for a float
        worker.handler(TOPIC)(lambda body: done.set())
        assert worker.grace == math.inf
        with worker.running(timeout=None):
            broker.publish(TOPIC, 1)
            assert done.wait(DEADLINE)
        assert worker.drained


@pytest.mark.parametrize("timeout", list(BAD.values()), ids=list(BAD))
def test_an_asyncio_worker_refuses_a_bad_timeout_before_it_runs(timeout: Any) -> None:
    async def main() -> None:
        async with brokerkit.aio.connect("memory://") as broker:
            worker = brokerkit.aio.Worker(broker)
            done = asyncio.Event()

            @worker.handler(TOPIC)
            async def handle(body: int) -> None:
                done.set()

            with pytest.raises(InvalidOption, match=r"wait_ready\(timeout=\.\.\.\) must be"):
                await worker.wait_ready(timeout)
            with pytest.raises(InvalidOption, match=r"running\(timeout=\.\.\.\) must be"):
                async with worker.running(timeout=timeout):
                    pytest.fail("the block ran")
            await broker.publish(TOPIC, 1)
            async with worker.running(timeout=None):
                await asyncio.wait_for(done.wait(), DEADLINE)
            assert worker.drained

    asyncio.run(main())
