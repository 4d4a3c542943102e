"""Every WARNING line about a handler's failure carries its traceback, and only a
failure retried within a second is thinned to attempts 1, 2, 4, 8... (review 37,
second and third pass).

Before, the traceback came with attempt 1's line only: a message first handled by this
process at attempt 3 (a restarted worker while the message loops, a broker's
redelivery) logged attempt 3 at DEBUG (still so: the thinning goes by the attempt) and
attempt 4 at WARNING without the traceback, which never showed above DEBUG (now it
does). And a failure retried a second or more
later was thinned too, although such a delay is no loop to flood the log.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

import brokerkit
from brokerkit.worker import Fixed, Immediate
from tests.waiting import wait_until

#: A hang guard, never a pace.
GUARD = 60.0


def _poison(body: Any) -> None:
    raise KeyError("missing")


def _failures(caplog: pytest.LogCaptureFixture, message_id: str) -> dict[int, logging.LogRecord]:
    """The worker's lines about the failures of ``message_id``, by attempt."""
    found: dict[int, logging.LogRecord] = {}
    for record in caplog.records:
        text = record.getMessage()
        if record.name == "brokerkit.worker" and f"failed on {message_id} " in text:
            attempt = int(text.split("attempt ", 1)[1].split(" ", 1)[0].rstrip(",)"))
            assert attempt not in found, text
            found[attempt] = record
    return found


def _has_traceback(record: logging.LogRecord) -> bool:
    return record.exc_info is not None or bool(record.exc_text)


def test_a_message_first_seen_at_attempt_3_shows_its_traceback_at_the_next_shown_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="brokerkit.worker")
    topic = "r37-first-sight"
    with brokerkit.connect("memory://") as broker:
        message_id = broker.publish(topic, {"n": 1})
        # two attempts elsewhere (another worker, gone): this one sees attempt 3 first
        subscription = broker.subscribe(topic, group="g")
        for attempt in (1, 2):
            delivery = subscription.receive(timeout=GUARD)
            assert delivery is not None and delivery.attempt == attempt
            delivery.nack(requeue=True)
        subscription.close()
        worker = brokerkit.Worker(broker)
        worker.handler(topic, group="g", retry=Immediate(max_attempts=6))(_poison)
        with worker.running():
            wait_until(lambda: worker.stats()[0].dead_lettered == 1, "the dead letter", GUARD)
    records = _failures(caplog, message_id)
    assert sorted(records) == [3, 4, 5, 6], sorted(records)
    levels = {attempt: record.levelno for attempt, record in records.items()}
    assert levels == {3: logging.DEBUG, 4: logging.WARNING, 5: logging.DEBUG, 6: logging.ERROR}
    for record in records.values():
        assert _has_traceback(record), record.getMessage()
    assert "(topic 'r37-first-sight', attempt 4 of 6, next shown at 6)" in (records[4].getMessage())


def test_a_failure_retried_a_second_later_is_always_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A delay of a second or more (one here: the test waits it twice); a shorter one
    may loop fast and is thinned (tests/test_worker_review37_third_pass.py)."""
    caplog.set_level(logging.DEBUG, logger="brokerkit.worker")
    topic = "r37-delayed"
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        worker.handler(topic, group="g", retry=Fixed(1.0, max_attempts=3))(_poison)
        with worker.running():
            message_id = broker.publish(topic, {"n": 1})
            wait_until(lambda: worker.stats()[0].dead_lettered == 1, "the dead letter", GUARD)
    records = _failures(caplog, message_id)
    assert sorted(records) == [1, 2, 3], sorted(records)
    for attempt in (1, 2):
        record = records[attempt]
        text = record.getMessage()
        assert record.levelno == logging.WARNING, text
        assert _has_traceback(record), text
        # no line is left out, so none names the next one shown
        assert f"(topic 'r37-delayed', attempt {attempt} of 3), retried in 1 s" in text
    assert records[3].levelno == logging.ERROR
