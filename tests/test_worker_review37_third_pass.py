"""Review 37, third pass: a failure retried within a second is thinned as a retry at
once is; a message given up on gets one accurate ERROR line whatever its nack did; a
handler thread that raised after a hard stop of the asyncio worker counts failed and is
logged; one that returned before the stop, its slot not back yet, is acked.

Before: ``Fixed(0.005)`` logged every attempt at WARNING with its traceback (some 200
a second); a dead-letter nack cut short by a hard stop logged two ERROR lines (the
first saying "not dead-lettered yet", the second "dead-lettered"), one that raised a
bug's error logged "its nack was cut short", and one cut short again while the worker
stopped logged none; under ``brokerkit.aio.Worker`` a plain handler that raised after
the hard stop was neither counted nor logged, and one that had returned was counted
failed and nacked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.backends.memory import AsyncMemoryBroker
from brokerkit.worker import Fixed, Immediate, RetryPolicy
from brokerkit.worker._call import HandlerCall
from brokerkit.worker._settle_async import AsyncSettler
from brokerkit.worker._stats import HandlerStats
from tests.test_worker_review37_counts_once import (
    _gated,
    _hangs,
    _hard_stop_at_the_gate,
    _open,
)
from tests.waiting import wait_until, wait_until_async

#: A hang guard, never a pace.
GUARD = 60.0


def _poison(body: Any) -> None:
    raise KeyError("missing")


async def _raises(body: int) -> None:
    raise KeyError("missing")


def _failures(caplog: pytest.LogCaptureFixture, message_id: str) -> dict[int, logging.LogRecord]:
    """The worker's lines about the failures of ``message_id``, by attempt."""
    found: dict[int, logging.LogRecord] = {}
    for record in caplog.records:
        text = record.getMessage()
        if record.name == "brokerkit.worker" and f" on {message_id} (topic" in text:
            attempt = int(text.split("attempt ", 1)[1].split(" ", 1)[0].rstrip(",)"))
            assert attempt not in found, text
            found[attempt] = record
    return found


def _has_traceback(record: logging.LogRecord) -> bool:
    return record.exc_info is not None or bool(record.exc_text)


def _errors(caplog: pytest.LogCaptureFixture, message_id: str) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.levelno >= logging.ERROR and message_id in r.getMessage()
    ]


# -- 1. a retry within a second is thinned ----------------------------------------------


def test_a_failure_retried_within_a_second_is_thinned(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="brokerkit.worker")
    topic = "r37-short-delay"
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        worker.handler(topic, group="g", retry=Fixed(0.001, max_attempts=6))(_poison)
        with worker.running():
            message_id = broker.publish(topic, {"n": 1})
            wait_until(lambda: worker.stats()[0].dead_lettered == 1, "the dead letter", GUARD)
    records = _failures(caplog, message_id)
    levels = {attempt: record.levelno for attempt, record in records.items()}
    assert levels == {
        1: logging.WARNING,
        2: logging.WARNING,
        3: logging.DEBUG,
        4: logging.WARNING,
        5: logging.DEBUG,
        6: logging.ERROR,
    }, levels
    for record in records.values():
        assert _has_traceback(record), record.getMessage()
    # Fixed's delay does not change: the line names the next one shown
    text = records[4].getMessage()
    assert "(topic 'r37-short-delay', attempt 4 of 6, next shown at 6), retried in 0.001 s" in (
        text
    ), text


@dataclass(frozen=True)
class _SlowThird(RetryPolicy):
    """At once after attempts 1 and 2; a second after attempt 3."""

    def delay(self, attempt: int) -> float:
        return 1.0 if attempt == 3 else 0.0


def test_a_failure_retried_a_second_later_always_shows(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="brokerkit.worker")
    topic = "r37-second-delay"
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        worker.handler(topic, group="g", retry=_SlowThird(max_attempts=4))(_poison)
        with worker.running():
            message_id = broker.publish(topic, {"n": 1})
            wait_until(lambda: worker.stats()[0].dead_lettered == 1, "the dead letter", GUARD)
    records = _failures(caplog, message_id)
    assert records[3].levelno == logging.WARNING, records[3].getMessage()
    assert "(topic 'r37-second-delay', attempt 3 of 4), retried in 1 s" in records[3].getMessage()
    # a policy whose delay changes names no next line shown: attempt 3's comes first
    assert "(topic 'r37-second-delay', attempt 2 of 4), retried in 0 s" in records[2].getMessage()


# -- 4. one ERROR line per message given up on ------------------------------------------


def test_a_dead_letter_nack_cut_short_logs_one_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="brokerkit.worker")
    stats, inspection, message_id = _hard_stop_at_the_gate("nack", _raises, attempts=1)
    # the stop nacks it again: dead-lettered
    assert (stats.failed, stats.dead_lettered, inspection.dead_lettered) == (1, 1, 1), stats
    errors = _errors(caplog, message_id)
    assert len(errors) == 1, [r.getMessage() for r in errors]
    (record,) = errors
    text = record.getMessage()
    assert (
        f"handler _raises failed on {message_id} (topic 'r37-gated', attempt 1 of 1), "
        "dead-lettered: KeyError: 'missing'"
    ) in text, text
    assert _has_traceback(record), text


def test_a_dead_letter_nack_raising_a_bug_is_not_said_cut_short(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="brokerkit.worker")

    async def main() -> tuple[Any, Any, str]:
        cls = _gated("nack", RuntimeError("a bug in the nack"))
        async with await _open(cls) as broker:
            worker = brokerkit.aio.Worker(broker)
            worker.handler("r37-dl-bug", retry=Immediate(max_attempts=1))(_raises)
            async with worker.running():
                message_id = await broker.publish("r37-dl-bug", 1)
                # the worker's own step nacks it again: dead-lettered
                await wait_until_async(
                    lambda: worker.stats()[0].dead_lettered == 1, "the dead letter", GUARD
                )
            return worker.stats()[0], await broker.inspect("r37-dl-bug"), message_id

    stats, inspection, message_id = asyncio.run(main())
    assert (stats.failed, stats.dead_lettered, inspection.dead_lettered) == (1, 1, 1), stats
    errors = _errors(caplog, message_id)
    assert len(errors) == 1, [r.getMessage() for r in errors]
    (record,) = errors
    text = record.getMessage()
    assert "cut short" not in text, text
    assert (
        f"handler _raises failed on {message_id} (topic 'r37-dl-bug', attempt 1 of 1), "
        "dead-lettered: KeyError: 'missing'"
    ) in text, text
    assert _has_traceback(record), text


def test_a_dead_letter_nack_cut_short_twice_still_logs_its_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A hanging handler cancelled at its last attempt, the nack of the stop cut short
    in turn: one ERROR line that says the message may not be dead-lettered."""
    caplog.set_level(logging.INFO, logger="brokerkit.worker")

    async def main() -> tuple[Any, str]:
        cls = _gated("nack")
        async with await _open(cls) as broker:
            worker = brokerkit.aio.Worker(broker, grace=0)
            worker.handler("r37-gated", retry=Immediate(max_attempts=1))(_hangs)
            message_id = await broker.publish("r37-gated", 1)
            run = asyncio.ensure_future(worker.run())
            await wait_until_async(lambda: worker.stats()[0].in_flight == 1, "the handler", GUARD)
            worker.stop(now=True)  # the slot's nack is held at the gate
            await asyncio.wait_for(cls.entered.wait(), GUARD)
            run.cancel()  # and cut short in turn
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(run, GUARD)
            return worker.stats()[0], message_id

    stats, message_id = asyncio.run(main())
    assert (stats.failed, stats.dead_lettered) == (1, 0), stats
    errors = _errors(caplog, message_id)
    assert len(errors) == 1, [r.getMessage() for r in errors]
    text = errors[0].getMessage()
    assert (
        f"handler _hangs was cancelled by a hard stop of the worker on {message_id} (topic "
        "'r37-gated', attempt 1 of 1), dead-lettered only if its nack reached the server: "
        "the nack was cut short (if it did not, the message comes again once its lease "
        "runs out)"
    ) in text, text


# -- 2. a handler thread the asyncio worker abandoned -----------------------------------


def test_an_abandoned_handler_thread_that_raises_counts_failed_under_aio(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="brokerkit.worker")
    entered, release = threading.Event(), threading.Event()

    def stuck(body: int) -> None:
        entered.set()
        assert release.wait(GUARD)
        raise KeyError("missing")

    def dropped_logged() -> bool:
        return any(
            "after the worker abandoned it (raised KeyError" in r.getMessage()
            for r in caplog.records
        )

    async def main() -> Any:
        url = f"memory://r37-aio-dropped-{uuid.uuid4().hex}"
        async with brokerkit.aio.connect(url) as broker:
            worker = brokerkit.aio.Worker(broker, grace=0)
            worker.handler("r37-aio-dropped")(stuck)
            await broker.publish("r37-aio-dropped", 1)
            run = asyncio.ensure_future(worker.run())
            try:
                assert await asyncio.to_thread(entered.wait, GUARD)
                worker.stop(now=True)
                await asyncio.wait_for(run, GUARD)  # its handler thread still runs
            finally:
                release.set()
            await wait_until_async(dropped_logged, "the dropped result", GUARD)
            return worker.stats()[0]

    stats = asyncio.run(main())
    assert (stats.failed, stats.retried, stats.dead_lettered, stats.processed) == (
        1,
        0,
        0,
        0,
    ), stats


# -- 5. a handler thread that returned, its slot cut short before it came back ------------


def test_a_handler_thread_that_returned_before_the_stop_is_acked() -> None:
    """The slot of the asyncio worker is cancelled after its handler's thread returned
    but before the slot took the result: the call is over, so cut_short acks it."""

    async def main() -> tuple[HandlerStats, Any]:
        url = brokerkit.BrokerURL.parse(f"memory://r37-returned-{uuid.uuid4().hex}")
        async with AsyncMemoryBroker.from_url(url) as broker:
            worker = brokerkit.aio.Worker(broker)
            worker.handler("r37-returned")(lambda body: None)
            (spec,) = worker.handlers
            stats = HandlerStats(spec.topic, spec.name)
            settler = AsyncSettler(broker, spec, stats, None)
            await broker.publish("r37-returned", 1)
            subscription = await broker.subscribe("r37-returned")
            delivery = await subscription.receive(timeout=GUARD)
            assert delivery is not None
            call = HandlerCall(delivery)
            await asyncio.to_thread(call.wrap(spec.function), 1)  # returned in its thread
            await settler.cut_short(delivery, call)  # the slot cancelled meanwhile
            inspection = await broker.inspect("r37-returned")
            await subscription.close()
            return stats, inspection

    stats, inspection = asyncio.run(main())
    snapshot = stats.snapshot()
    assert (snapshot.processed, snapshot.failed, snapshot.retried) == (1, 0, 0), snapshot
    (group,) = inspection.groups
    assert (inspection.in_flight, group.lag) == (0, 0), inspection
