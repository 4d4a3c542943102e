"""Stopping a worker (twenty-sixth review of the worker): a grace too long for a
thread's wait, and whether the drain finished when no handler was running."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from tests.waiting import wait_until

#: Every wait in these tests polls with this deadline; none is a sleep.
DEADLINE = 10.0

# -- a grace longer than a thread waits --------------------------------------------------


@pytest.mark.parametrize("grace", [float("inf"), 1e10, threading.TIMEOUT_MAX * 2])
def test_running_takes_any_grace_the_worker_accepts(grace: float) -> None:
    """``threading.Event.wait`` refuses a timeout beyond ``threading.TIMEOUT_MAX``; the
    end of ``running()`` waited ``grace + timeout`` in one wait (OverflowError)."""
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker, grace=grace)
        handled = threading.Event()

        @worker.handler("jobs")
        def job(body: Any) -> None:
            handled.set()

        broker.publish("jobs", 1)
        with worker.running():
            assert handled.wait(DEADLINE)
        assert worker.drained
        assert worker.stats()[0].processed == 1


@pytest.mark.parametrize("grace", [float("inf"), 1e10])
def test_the_asyncio_workers_running_takes_any_grace_too(grace: float) -> None:
    async def main() -> brokerkit.aio.Worker:
        async with brokerkit.aio.connect("memory://") as broker:
            worker = brokerkit.aio.Worker(broker, grace=grace)

            handled = asyncio.Event()

            @worker.handler("jobs")
            async def job(body: Any) -> None:
                handled.set()

            async with worker.running():
                await broker.publish("jobs", 1)
                await handled.wait()  # bounded by the wait_for below
            return worker

    worker = asyncio.run(asyncio.wait_for(main(), DEADLINE))
    assert worker.drained


# -- grace=0: a slot ending its receive is no handler running ----------------------------


class _HeldReceive:
    """Holds the first delivery's receive in its slot, after the fetch and before the
    worker sees the delivery, until ``release`` (``guard`` seconds bound it: longer than
    what the test waits for, so that the hold never ends on its own within a test)."""

    def __init__(self, guard: float = DEADLINE) -> None:
        self.guard = guard
        self.entered = threading.Event()
        self.release = threading.Event()

    @brokerkit.hookimpl
    def brokerkit_deliver_start(self, delivery: Any, scope: dict[str, Any]) -> None:
        if not self.entered.is_set():
            self.entered.set()
            self.release.wait(self.guard)


class _Warned(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.cut_short = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "handlers still running" in record.getMessage():
            self.cut_short.set()


def test_with_no_grace_a_slot_still_in_its_receive_leaves_the_drain_complete() -> None:
    """grace=0 and no handler running: the drain is complete (``drained``), though a
    slot is still inside its receive when the drain looks. That receive brought a
    delivery (held in a hook until the drain has decided): it is handed back before
    the run returns, never handled, its attempt not counted.

    The slot is released once the drain has given its verdict, either one: True (set
    before the run waits for its slots) or the warning of handlers cut short."""
    plugin = _HeldReceive()
    warned = _Warned()
    manager = brokerkit.get_plugin_manager()
    manager.register(plugin)
    logger = logging.getLogger("brokerkit.worker")
    logger.addHandler(warned)
    try:
        with brokerkit.connect("memory://") as broker:
            worker = brokerkit.Worker(broker, grace=0)
            calls: list[Any] = []

            @worker.handler("jobs")
            def job(body: Any) -> None:
                calls.append(body)

            def release_on_the_verdict() -> None:
                try:
                    wait_until(
                        lambda: worker.drained or warned.cut_short.is_set(),
                        "the drain's verdict",
                        within=DEADLINE,
                    )
                finally:
                    plugin.release.set()

            releaser = threading.Thread(target=release_on_the_verdict, daemon=True)
            broker.publish("jobs", {"n": 1})
            with worker.running():
                assert plugin.entered.wait(DEADLINE)
                releaser.start()
            releaser.join(DEADLINE)
            assert worker.drained, "grace=0 with no handler running is a complete drain"
            assert not warned.cut_short.is_set()
            assert calls == []
            assert broker.inspect("jobs").in_flight == 0  # handed back before run returned
            (again,) = list(broker.consume("jobs", timeout=0))
            assert again.body == {"n": 1} and again.attempt == 1
            again.ack()
    finally:
        logger.removeHandler(warned)
        manager.unregister(plugin)


@pytest.mark.parametrize("concurrency", [1, 8])
def test_with_no_grace_an_idle_worker_drains(concurrency: int) -> None:
    """The slots of an idle worker are all in their receive when it stops: none is a
    handler running (the sync worker said otherwise in up to half its stops: this
    catches that most runs, the test above every run)."""
    for _ in range(5):
        with brokerkit.connect("memory://") as broker:
            worker = brokerkit.Worker(broker, grace=0)
            worker.handler("jobs", concurrency=concurrency)(lambda body: None)
            with worker.running():
                pass
            assert worker.drained


def test_with_no_grace_a_handler_running_still_leaves_the_drain_cut_short() -> None:
    """The other side: a handler that runs when the drain looks is one (its thread
    left running, its result dropped, its delivery coming back after the lease)."""
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker, grace=0)
        started, release = threading.Event(), threading.Event()

        @worker.handler("jobs")
        def job(body: Any) -> None:
            started.set()
            release.wait(DEADLINE)

        broker.publish("jobs", 1)
        try:
            with worker.running():
                assert started.wait(DEADLINE)
        finally:
            release.set()
        assert not worker.drained
