"""A run's start counts are its own however runs overlap (review 35).

``drained``, ``_started`` and ``_subscribed`` (what ``brokerkit worker`` prints of a
start) were reset at the top of a run, skipped while another run was going, but a run
claimed the worker only after its handlers' checks. A run whose check went on while
the other run ended (or while a second run started, ran and ended) kept that run's
values: a subscribe that failed read (drained, started, subscribed) = (False, True, 1)
instead of (False, False, 0), and a 1-handler worker read 2 subscribed. The run that
claims the worker resets them now.

The window is held open by a handler whose check blocks, on its first call, until the
test lets it go: no sleep, no timing."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import BrokerError
from brokerkit.worker import HandlerSpec
from tests.waiting import call_in_thread

#: Every wait of the tests is bounded by this; none is a sleep.
DEADLINE = 10.0


class _Gate:
    """Holds the first call of a handler's ``check`` until :meth:`open`: the run that
    made it stays between its reset and its claim of the worker."""

    def __init__(self, spec: HandlerSpec) -> None:
        self.held, self._go = threading.Event(), threading.Event()
        self._first = True
        self._lock = threading.Lock()
        real = spec.check

        def check(backend: type[Any]) -> None:
            with self._lock:
                first, self._first = self._first, False
            if first:
                self.held.set()
                assert self._go.wait(DEADLINE), "the test never let the check go"
            real(backend)

        object.__setattr__(spec, "check", check)  # a frozen dataclass

    def open(self) -> None:
        self._go.set()


def _counts(worker: Any) -> tuple[bool, bool, int]:
    return (worker.drained, worker._started, worker._subscribed)


def test_a_failed_start_reads_none_of_the_run_that_ended_while_it_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker, grace=0)

        @worker.handler("jobs", name="first")
        def first(body: Any) -> None:
            pass

        with worker.running(timeout=DEADLINE):
            gate = _Gate(worker.handlers[0])
            thread, raised = call_in_thread(worker.run)
            assert gate.held.wait(DEADLINE), "the second run's check"
        assert _counts(worker) == (True, True, 1), "the first run's own"

        def no_server(*args: Any, **kwargs: Any) -> Any:
            raise BrokerError("no server")

        monkeypatch.setattr(broker, "subscribe", no_server)
        gate.open()
        thread.join(DEADLINE)
        assert not thread.is_alive()
        assert len(raised) == 1 and isinstance(raised[0], BrokerError), raised
        assert _counts(worker) == (False, False, 0)


def test_a_run_counts_only_its_own_subscriptions_when_another_ran_while_it_checked() -> None:
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker, grace=0)

        @worker.handler("jobs", name="first")
        def first(body: Any) -> None:
            pass

        gate = _Gate(worker.handlers[0])
        thread, raised = call_in_thread(worker.run)
        try:
            assert gate.held.wait(DEADLINE), "the first run's check"
            with worker.running(timeout=DEADLINE):  # starts, runs and ends meanwhile
                pass
            assert _counts(worker) == (True, True, 1)
            gate.open()
            assert worker.wait_ready(DEADLINE), raised
            assert _counts(worker) == (False, True, 1), "1 handler, subscribed once"
        finally:
            gate.open()
            worker.stop()
            thread.join(DEADLINE)
        assert not thread.is_alive() and raised == []
        assert _counts(worker) == (True, True, 1)


def test_the_asyncio_worker_resets_them_when_it_claims_the_worker_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def no_server(*args: Any, **kwargs: Any) -> Any:
        raise BrokerError("no server")

    async def main() -> tuple[tuple[bool, bool, int], list[BaseException]]:
        async with brokerkit.aio.connect("memory://") as broker:
            worker = brokerkit.aio.Worker(broker, grace=0)

            @worker.handler("jobs", name="first")
            async def first(body: Any) -> None:
                pass

            async with worker.running(timeout=DEADLINE):
                gate = _Gate(worker.handlers[0])
                # a run in its own event loop, in another thread, its check held
                thread, raised = call_in_thread(lambda: asyncio.run(worker.run()))
                assert await asyncio.to_thread(gate.held.wait, DEADLINE)
            assert _counts(worker) == (True, True, 1), "the first run's own"
            monkeypatch.setattr(broker, "subscribe", no_server)
            gate.open()
            await asyncio.to_thread(thread.join, DEADLINE)
            assert not thread.is_alive()
            return _counts(worker), raised

    counts, raised = asyncio.run(asyncio.wait_for(main(), DEADLINE * 2))
    assert len(raised) == 1 and isinstance(raised[0], BrokerError), raised
    assert counts == (False, False, 0)
