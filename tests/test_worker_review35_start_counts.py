"""What a worker says of its last run's start (review 35): how many handlers it
subscribed (``_subscribed``, which ``brokerkit worker`` prints above the error of a
start that failed part way), whether it started (``_started``) and ``drained``.

- A handler's start that failed after its subscribe (a slot thread that could not be
  started) left a live subscription out of the count: counted once the handler is
  subscribed. The failure is made at the spawn of the slot (the only seam there:
  ``can't start new thread`` is what the thread module raises when it runs out).
- A run that failed before it ran (no broker, a handler the broker cannot serve)
  left the previous run's values: it reads none now. A run refused because another
  runs leaves that run's own."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

import brokerkit
import brokerkit.aio
from brokerkit._capabilities import Capability
from brokerkit.backends.memory import MemoryBroker
from brokerkit.exceptions import ConfigurationError, Unsupported
from brokerkit.worker import Fixed

#: Every wait of the tests is bounded by this; none is a sleep.
DEADLINE = 10.0


def _failing_slots(real: Callable[..., Any], handler: str) -> Callable[..., Any]:
    """``spawn`` that fails to start the slots of ``handler`` (its other work, and every
    other handler's, is started as it is)."""

    def spawn(target: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith(f"brokerkit-worker {handler} #"):
            raise RuntimeError("can't start new thread")
        return real(target, name, *args, **kwargs)

    return spawn


def test_a_handler_whose_slots_failed_to_start_after_its_subscribe_is_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import brokerkit.worker._runner as runner_module

    real = getattr(runner_module, "spawn")  # noqa: B009 (not exported: mypy)
    monkeypatch.setattr(runner_module, "spawn", _failing_slots(real, "second"))
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker, grace=0)

        @worker.handler("jobs", name="first")
        def first(body: Any) -> None:
            pass

        @worker.handler("more-jobs", name="second")
        def second(body: Any) -> None:
            pass

        with pytest.raises(RuntimeError, match="can't start new thread"):
            worker.run()
        assert worker._subscribed == 2, "the second handler had subscribed"
        assert not worker._started and not worker.drained
        # both subscriptions were closed by the failed start's drain
        broker.publish("more-jobs", {"n": 1})
        assert broker.inspect("more-jobs").in_flight == 0


def test_the_asyncio_worker_counts_it_too(monkeypatch: pytest.MonkeyPatch) -> None:
    import brokerkit.worker._runner_async as runner_module

    real = getattr(runner_module, "spawn")  # noqa: B009 (not exported: mypy)
    monkeypatch.setattr(runner_module, "spawn", _failing_slots(real, "second"))

    async def main() -> brokerkit.aio.Worker:
        async with brokerkit.aio.connect("memory://") as broker:
            worker = brokerkit.aio.Worker(broker, grace=0)

            @worker.handler("jobs", name="first")
            async def first(body: Any) -> None:
                pass

            @worker.handler("more-jobs", name="second")
            async def second(body: Any) -> None:
                pass

            with pytest.raises(RuntimeError, match="can't start new thread"):
                await worker.run()
            return worker

    worker = asyncio.run(asyncio.wait_for(main(), DEADLINE))
    assert worker._subscribed == 2, "the second handler had subscribed"
    assert not worker._started and not worker.drained


class _NoDelayMemory(MemoryBroker):
    """The memory backend without DELAY: a retry policy that waits is refused."""

    capabilities: ClassVar[Capability] = MemoryBroker.capabilities & ~Capability.DELAY


def _ran_once() -> tuple[brokerkit.Worker, MemoryBroker]:
    broker = brokerkit.connect("memory://")
    assert isinstance(broker, MemoryBroker)
    worker = brokerkit.Worker(broker, grace=0)

    @worker.handler("jobs", retry=Fixed(1.0))
    def job(body: Any) -> None:
        pass

    with worker.running(timeout=DEADLINE):
        pass
    assert worker._started and worker._subscribed == 1 and worker.drained
    return worker, broker


def test_a_run_without_a_broker_reads_nothing_of_the_run_before() -> None:
    worker, broker = _ran_once()
    try:
        worker.broker = None
        with pytest.raises(ConfigurationError, match="no broker"):
            worker.run()
        assert (worker._started, worker._subscribed, worker.drained) == (False, 0, False)
    finally:
        broker.close()


def test_a_run_the_broker_cannot_serve_reads_nothing_of_the_run_before() -> None:
    worker, broker = _ran_once()
    refusing = _NoDelayMemory.from_url("memory://")
    try:
        worker.broker = refusing
        with pytest.raises(Unsupported):
            worker.run()
        assert (worker._started, worker._subscribed, worker.drained) == (False, 0, False)
    finally:
        refusing.close()
        broker.close()


def test_a_run_refused_while_another_runs_leaves_that_runs_counts() -> None:
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker, grace=0)

        @worker.handler("jobs")
        def job(body: Any) -> None:
            pass

        with worker.running(timeout=DEADLINE):
            refused: list[BaseException] = []

            def second_run() -> None:
                try:
                    worker.run()
                except BaseException as exc:
                    refused.append(exc)

            thread = threading.Thread(target=second_run, daemon=True)
            thread.start()
            thread.join(DEADLINE)
            assert len(refused) == 1 and isinstance(refused[0], ConfigurationError), refused
            assert "already running" in str(refused[0])
            assert worker._started and worker._subscribed == 1
        assert worker.drained
