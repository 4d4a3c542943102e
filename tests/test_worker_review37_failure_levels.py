"""A handler's failures show at the ``brokerkit worker`` command's level (review 37).

Before, every failure was logged at INFO, which the command does not show: a message
whose handler always raised looped for ever under the default policy (thousands of
attempts a second) and the command logged nothing. Now a failure retried at once is
logged at WARNING at attempts 1, 2, 4, 8... of a message, at DEBUG otherwise, and a
message given up on (dead-lettered at its last attempt, or dropped by a backend that
never redelivers) at ERROR; every line with the traceback (since a later review: a
message first seen at attempt 3 showed none above DEBUG; see
tests/test_worker_review37_first_sight.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.worker import Immediate
from tests.waiting import wait_until, wait_until_async

ROOT = Path(__file__).resolve().parent.parent

#: A hang guard, never a pace.
GUARD = 60.0
#: The attempts a test message gets: retried at 1 to 19, dead-lettered at 20.
ATTEMPTS = 20
#: In the body only: no log line may show it.
SECRET = "r37-body-secret"


def _failures(caplog: pytest.LogCaptureFixture, message_id: str) -> dict[int, logging.LogRecord]:
    """The worker's lines about the failures of ``message_id``, by attempt."""
    found: dict[int, logging.LogRecord] = {}
    for record in caplog.records:
        text = record.getMessage()
        if record.name == "brokerkit.worker" and f"failed on {message_id} " in text:
            match = re.search(r"attempt (\d+)", text)
            assert match is not None, text
            attempt = int(match.group(1))
            assert attempt not in found, text
            found[attempt] = record
    return found


def _has_traceback(record: logging.LogRecord) -> bool:
    return record.exc_info is not None or bool(record.exc_text)


def _check_levels(records: dict[int, logging.LogRecord], topic: str) -> None:
    assert sorted(records) == list(range(1, ATTEMPTS + 1)), sorted(records)
    shown = {1, 2, 4, 8, 16}
    for attempt, record in records.items():
        text = record.getMessage()
        assert SECRET not in text, text
        assert f"topic {topic!r}" in text, text
        assert "KeyError: 'missing'" in text, text
        if attempt == ATTEMPTS:
            assert record.levelno == logging.ERROR, text
            assert f"attempt {ATTEMPTS} of {ATTEMPTS}), dead-lettered: " in text, text
            assert _has_traceback(record), text
        elif attempt in shown:
            assert record.levelno == logging.WARNING, text
            assert "retried in 0 s" in text, text
            assert _has_traceback(record), text
        else:
            assert record.levelno == logging.DEBUG, text
            assert _has_traceback(record), text
    # what the next line shown will be, where lines in between are DEBUG only
    assert "attempt 2 of 20, next shown at 4)" in records[2].getMessage()
    assert "attempt 8 of 20, next shown at 16)" in records[8].getMessage()
    assert "attempt 16 of 20, next shown at 20)" in records[16].getMessage()
    assert "attempt 1 of 20)" in records[1].getMessage()


def _poison(body: dict[str, Any]) -> None:
    raise KeyError("missing")


def _run_sync(broker: brokerkit.Broker, topic: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="brokerkit.worker")
    worker = brokerkit.Worker(broker)
    worker.handler(topic, group="g", retry=Immediate(max_attempts=ATTEMPTS))(_poison)
    with worker.running():
        message_id = broker.publish(topic, {"secret": SECRET})
        wait_until(lambda: worker.stats()[0].dead_lettered == 1, "the dead letter", GUARD)
    stats = worker.stats()[0]
    assert (stats.failed, stats.retried, stats.dead_lettered) == (ATTEMPTS, ATTEMPTS - 1, 1)
    _check_levels(_failures(caplog, message_id), topic)


def test_memory(caplog: pytest.LogCaptureFixture) -> None:
    with brokerkit.connect("memory://") as broker:
        _run_sync(broker, "r37-levels", caplog)


def test_redis_stream(redis_broker: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    _run_sync(redis_broker("redis+stream"), "r37-levels", caplog)


def test_the_asyncio_worker_logs_the_same(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="brokerkit.worker")
    topic = "r37-levels-aio"

    async def main() -> str:
        async with brokerkit.aio.connect("memory://") as broker:
            worker = brokerkit.aio.Worker(broker)

            @worker.handler(topic, retry=Immediate(max_attempts=ATTEMPTS))
            async def poison(body: dict[str, Any]) -> None:
                raise KeyError("missing")

            async with worker.running():
                message_id = await broker.publish(topic, {"secret": SECRET})
                await wait_until_async(
                    lambda: worker.stats()[0].dead_lettered == 1, "the dead letter", GUARD
                )
            return message_id

    message_id = asyncio.run(main())
    _check_levels(_failures(caplog, message_id), topic)


def test_unlimited_retries_say_which_attempt_is_shown_next(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The default policy, no max_deliveries: the loop logs log2(n) WARNING lines."""
    caplog.set_level(logging.DEBUG, logger="brokerkit.worker")
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)

        @worker.handler("r37-forever")
        def poison(body: dict[str, Any], delivery: brokerkit.Delivery) -> None:
            if delivery.attempt == 40:  # the end of the test: handled, no more failures
                worker.stop()
                return
            raise KeyError("missing")

        message_id = broker.publish("r37-forever", {"secret": SECRET})
        worker.run()
    records = _failures(caplog, message_id)
    assert sorted(records) == list(range(1, 40)), sorted(records)
    warnings = {a: r.getMessage() for a, r in records.items() if r.levelno == logging.WARNING}
    assert sorted(warnings) == [1, 2, 4, 8, 16, 32], warnings
    assert "(topic 'r37-forever', attempt 1)" in warnings[1]
    assert "(topic 'r37-forever', attempt 32, next shown at 64)" in warnings[32]
    assert all(r.levelno == logging.DEBUG for a, r in records.items() if a not in warnings)
    assert not any(r.levelno >= logging.ERROR for r in records.values())


def test_a_failure_on_a_backend_that_never_redelivers_is_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """kombu+memory has no ACK: the failed message is dropped, given up on at once."""
    caplog.set_level(logging.DEBUG, logger="brokerkit.worker")
    with brokerkit.connect("kombu+memory://") as broker:
        worker = brokerkit.Worker(broker)
        worker.handler("r37-at-most-once")(_poison)
        with worker.running():
            message_id = broker.publish("r37-at-most-once", {"secret": SECRET})
            wait_until(lambda: worker.stats()[0].failed == 1, "the failure", GUARD)
    lines = [
        r
        for r in caplog.records
        if r.name == "brokerkit.worker" and f"failed on {message_id} " in r.getMessage()
    ]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    (record,) = lines
    text = record.getMessage()
    assert record.levelno == logging.ERROR, text
    assert _has_traceback(record), text
    assert "not redelivered" in text and "dropped" in text, text
    assert "topic 'r37-at-most-once'" in text and SECRET not in text, text


APP = textwrap.dedent(
    """
    import threading

    import brokerkit
    from brokerkit.worker import Immediate

    worker = brokerkit.Worker()
    buried = threading.Event()


    @worker.handler("r37-jobs", retry=Immediate(max_attempts=4))
    def poison(body: dict):
        raise KeyError("missing")


    @worker.handler("r37-jobs.dlq")
    def undeliverable(body: dict):
        buried.set()


    def ready():
        if worker.wait_ready(60):
            worker.broker.publish("r37-jobs", {"secret": "r37-body-secret"})
        if buried.wait(60):
            print("ready", flush=True)


    threading.Thread(target=ready, daemon=True).start()
    """
)


def test_the_command_shows_the_failures(tmp_path: Path) -> None:
    """At the command's own level: attempts 1 and 2 as warnings, not 3, and the dead
    letter at 4 as an error, each with its traceback."""
    (tmp_path / "r37_poison_app.py").write_text(APP)
    child = subprocess.Popen(
        [sys.executable, "-m", "brokerkit.cli", "worker", "r37_poison_app:worker", "memory://"],
        cwd=tmp_path,
        env={
            **{k: v for k, v in os.environ.items() if k != "BROKERKIT_DEBUG"},
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"  # dead-lettered
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=GUARD)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(GUARD)
    assert child.returncode == 128 + signal.SIGTERM, stderr
    assert SECRET not in stderr, stderr
    lines = stderr.splitlines()
    failed = [i for i, line in enumerate(lines) if " failed on " in line]
    assert [lines[i].split(" handler ", 1)[0] for i in failed] == [
        "brokerkit: WARNING brokerkit.worker:",
        "brokerkit: WARNING brokerkit.worker:",
        "brokerkit: ERROR brokerkit.worker:",
    ], stderr
    assert [re.search(r"attempt \d+( of 4)?", lines[i]).group(0) for i in failed] == [  # type: ignore[union-attr]
        "attempt 1 of 4",
        "attempt 2 of 4",
        "attempt 4 of 4",
    ], stderr
    # a traceback right after each line
    for i in failed:
        assert lines[i + 1] == "Traceback (most recent call last):", stderr
    assert "KeyError: 'missing'" in lines[failed[0]], stderr
