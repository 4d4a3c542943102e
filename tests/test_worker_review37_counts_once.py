"""An attempt is counted once, as what it was, and a given-up message's ERROR line says
what its nack did (review 37, second pass).

Before: a hard stop that cut short the nack of a failed handler counted the attempt
failed twice; one that cut short the ack of a handler that had returned counted it
failed (and nacked it, retried); a delivery the worker itself failed to handle
(:meth:`AsyncSettler.broken`) was counted retried but not failed, and a handler thread
that raised after a hard stop abandoned it counted nothing, although the counters
define ``failed`` as the deliveries whose handler raised (and ``retried`` as failed
deliveries handed back); and the ERROR line said "dead-lettered" before the nack, which
could fail and leave the message to come again.

Over the memory backend's own asyncio broker, its ack or nack held at a gate (or made to
fail) the first time, as tests/test_threaded_cancelled_settle.py does.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar

import pytest

import brokerkit
import brokerkit.aio
from brokerkit import ConnectionFailed
from brokerkit.aio import AsyncDelivery
from brokerkit.backends.memory import AsyncMemoryBroker
from brokerkit.worker import Immediate, StatsSnapshot
from tests.waiting import wait_until, wait_until_async

#: A hang guard, never a pace.
GUARD = 60.0


class Gated(AsyncMemoryBroker):
    """The first ack or nack named in :attr:`gate` is held until cancelled (or raises
    :attr:`fail`); every other one is the memory broker's."""

    gate: ClassVar[str] = ""
    fail: ClassVar[BaseException | None] = None
    entered: ClassVar[asyncio.Event]

    async def _through(self, primitive: str) -> None:
        cls = type(self)
        if cls.gate != primitive:
            return
        cls.gate = ""
        cls.entered.set()
        if cls.fail is not None:
            raise cls.fail
        await asyncio.Event().wait()  # until the hard stop cancels it

    async def _ack(self, deliveries: Sequence[AsyncDelivery]) -> None:
        await self._through("ack")
        await super()._ack(deliveries)

    async def _nack_with(
        self,
        deliveries: Sequence[AsyncDelivery],
        requeue: bool,
        delay: float | None,
        reason: str | None,
    ) -> None:
        await self._through("nack")
        await super()._nack_with(deliveries, requeue, delay, reason)


def _gated(gate: str, fail: BaseException | None = None) -> type[Gated]:
    return type("GatedOnce", (Gated,), {"gate": gate, "fail": fail})


async def _open(cls: type[Gated]) -> Gated:
    cls.entered = asyncio.Event()
    url = brokerkit.BrokerURL.parse(f"memory://r37-counts-{uuid.uuid4().hex}")
    return cls.from_url(url)


def _hard_stop_at_the_gate(
    gate: str, handler: Any, *, attempts: int | None = None, fail: BaseException | None = None
) -> tuple[StatsSnapshot, Any, str]:
    """Run ``handler`` on one message until the gate is reached, then stop at once;
    the handler's stats, the topic's inspection and the message id."""

    async def main() -> tuple[StatsSnapshot, Any, str]:
        cls = _gated(gate, fail)
        async with await _open(cls) as broker:
            worker = brokerkit.aio.Worker(broker, grace=0)
            worker.handler("r37-gated", retry=Immediate(max_attempts=attempts))(handler)
            message_id = await broker.publish("r37-gated", 1)
            run = asyncio.ensure_future(worker.run())
            await asyncio.wait_for(cls.entered.wait(), GUARD)
            worker.stop(now=True)
            await asyncio.wait_for(run, GUARD)
            return worker.stats()[0], await broker.inspect("r37-gated"), message_id

    return asyncio.run(main())


async def _raises(body: int) -> None:
    raise KeyError("missing")


async def _returns(body: int) -> None:
    pass


async def _hangs(body: int) -> None:
    await asyncio.Event().wait()


def test_a_failed_handler_whose_nack_a_hard_stop_cuts_short_counts_failed_once() -> None:
    stats, _, _ = _hard_stop_at_the_gate("nack", _raises)
    # the cut-short nack, made again by the stop, hands it back: one attempt, failed once
    assert (stats.failed, stats.retried, stats.processed) == (1, 1, 0), stats


def test_a_handler_that_returned_whose_ack_a_hard_stop_cuts_short_is_acked() -> None:
    stats, inspection, _ = _hard_stop_at_the_gate("ack", _returns)
    assert (stats.processed, stats.failed, stats.retried) == (1, 0, 0), stats
    # acked: nothing in flight, nothing left for its group
    (group,) = inspection.groups
    assert (inspection.in_flight, group.lag, inspection.dead_lettered) == (0, 0, 0), inspection


async def _fails_once(body: int, delivery: AsyncDelivery) -> None:
    if delivery.attempt == 1:
        raise KeyError("missing")


def _dead_letter_nack_fails(handler: Any, *, hard_stop: bool) -> tuple[StatsSnapshot, Any, str]:
    """The handler's message at its last attempt (max_attempts=1), the nack that gives
    it up failing (the release then hands it back)."""

    async def main() -> tuple[StatsSnapshot, Any, str]:
        cls = _gated("nack", ConnectionFailed("the server went away"))
        async with await _open(cls) as broker:
            worker = brokerkit.aio.Worker(broker, grace=0)
            worker.handler("r37-dlq-nack", retry=Immediate(max_attempts=1))(handler)
            message_id = await broker.publish("r37-dlq-nack", 1)
            if hard_stop:
                run = asyncio.ensure_future(worker.run())
                await wait_until_async(
                    lambda: worker.stats()[0].in_flight == 1, "the handler running", GUARD
                )
                worker.stop(now=True)
                await asyncio.wait_for(run, GUARD)
            else:
                async with worker.running():
                    # handed back by the release, it comes again, and is handled
                    await wait_until_async(
                        lambda: worker.stats()[0].processed == 1, "attempt 2", GUARD
                    )
            assert cls.entered.is_set()
            return worker.stats()[0], await broker.inspect("r37-dlq-nack"), message_id

    return asyncio.run(main())


@pytest.mark.parametrize("hard_stop", [False, True], ids=["failed", "cancelled"])
def test_a_dead_letter_whose_nack_failed_is_not_said_dead_lettered(
    hard_stop: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="brokerkit.worker")
    handler = _hangs if hard_stop else _fails_once
    stats, inspection, message_id = _dead_letter_nack_fails(handler, hard_stop=hard_stop)
    assert (stats.failed, stats.dead_lettered, stats.retried) == (1, 0, 0), stats
    if hard_stop:  # handed back by the release: it waits for the next worker
        (group,) = inspection.groups
        info = (group.lag, inspection.in_flight, inspection.dead_lettered)
        assert info == (1, 0, 0), inspection
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    (text,) = errors
    what = "was cancelled by a hard stop of the worker" if hard_stop else "failed"
    assert f"handler {handler.__name__} {what} on {message_id} " in text, text
    assert (
        "(topic 'r37-dlq-nack', attempt 1 of 1), not dead-lettered: its nack failed, so "
        "it comes again"
    ) in text, text
    assert "dead-lettered:" not in text.replace("not dead-lettered:", ""), text


def test_a_delivery_the_worker_fails_to_handle_counts_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An error no step expects (an ack raising what is no BrokerError: a bug) nacks
    the delivery, an attempt counted: retried, so failed too."""
    caplog.set_level(logging.INFO, logger="brokerkit.worker")

    async def main() -> StatsSnapshot:
        cls = _gated("ack", RuntimeError("a bug in the ack"))
        async with await _open(cls) as broker:
            worker = brokerkit.aio.Worker(broker)
            worker.handler("r37-broken")(_returns)
            async with worker.running():
                await broker.publish("r37-broken", 1)
                # attempt 1's ack raised; attempt 2 is acked
                await wait_until_async(lambda: worker.stats()[0].processed == 1, "attempt 2", GUARD)
            return worker.stats()[0]

    stats = asyncio.run(main())
    assert (stats.processed, stats.failed, stats.retried) == (1, 1, 1), stats
    assert any("a slot failed and starts over" in r.getMessage() for r in caplog.records)


def test_a_handler_thread_that_raises_after_a_hard_stop_counts_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The sync worker's slot thread cannot be stopped: its handler's result is
    dropped when it ends (the delivery comes back when its lease runs out). Raised,
    it is a failure: failed, but neither retried nor dead-lettered."""
    caplog.set_level(logging.INFO, logger="brokerkit.worker")
    entered, release = threading.Event(), threading.Event()

    def stuck(body: int) -> None:
        entered.set()
        assert release.wait(GUARD)
        raise KeyError("missing")

    with brokerkit.connect(f"memory://r37-dropped-{uuid.uuid4().hex}") as broker:
        worker = brokerkit.Worker(broker, grace=0)
        worker.handler("r37-dropped")(stuck)
        broker.publish("r37-dropped", 1)
        runner = threading.Thread(target=worker.run)
        runner.start()
        try:
            assert entered.wait(GUARD)
            worker.stop(now=True)
            runner.join(GUARD)  # the run ends, its slot thread still in the handler
            assert not runner.is_alive()
        finally:
            release.set()
        wait_until(
            lambda: any(
                "after the worker abandoned it (raised KeyError" in r.getMessage()
                for r in caplog.records
            ),
            "the dropped result",
            GUARD,
        )
        stats = worker.stats()[0]
    assert (stats.failed, stats.retried, stats.dead_lettered, stats.processed) == (
        1,
        0,
        0,
        0,
    ), stats
