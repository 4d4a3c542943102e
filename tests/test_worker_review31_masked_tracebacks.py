"""The traceback the worker logs with a handler's failure (thirty-first review of the
worker): a pydantic or msgspec validation error the handler raised, or one it raised
another error from, is printed with every frame but without the values it quotes (its
text as the reasons tell it), and the record carries no ``exc_info`` that a handler of
its own would print whole; any other error is logged with its ``exc_info`` as before."""

from __future__ import annotations

import asyncio
import builtins
import enum
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pydantic
import pytest

import brokerkit
import brokerkit.aio
from brokerkit.worker import Immediate
from brokerkit.worker._tracebacks import error_traceback, shows_values
from tests.waiting import wait_until

DEADLINE = 10.0
SECRET = "password=hunter2"
AGE_TEXT = (
    "User: age: Input should be a valid integer, unable to parse string as an integer [int_parsing]"
)


class User(pydantic.BaseModel):
    name: str = "bob"
    age: int


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[_Records]:
    handler = _Records()
    logger = logging.getLogger("brokerkit.worker")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def validates_itself(body: dict[str, Any]) -> None:
    User.model_validate(body)


def raises_from_it(body: dict[str, Any]) -> None:
    try:
        User.model_validate(body)
    except pydantic.ValidationError as exc:
        raise RuntimeError("the order could not be read") from exc


class Colour(enum.Enum):
    RED = "red"


def converts_with_msgspec(body: dict[str, Any]) -> None:
    msgspec.convert(body, dict[str, Colour])


def fails_plainly(body: dict[str, Any]) -> None:
    raise ConnectionError("gateway timeout")


def _run(topic: str, handler: Any, body: dict[str, Any]) -> None:
    """Fail once (retried), then again (dead-lettered), on a memory broker."""
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        worker.handler(topic, retry=Immediate(max_attempts=2))(handler)
        broker.publish(topic, body)
        with worker.running():
            wait_until(
                lambda: worker.stats()[0].dead_lettered == 1,
                "the message dead-lettered",
                within=DEADLINE,
            )


def _failures(records: _Records) -> list[logging.LogRecord]:
    found = [r for r in records.records if " failed on " in r.getMessage()]
    assert len(found) == 2, [r.getMessage() for r in records.records]
    return found


@pytest.mark.parametrize(
    ("handler", "last_line"),
    [
        (validates_itself, f"pydantic_core._pydantic_core.ValidationError: {AGE_TEXT}"),
        (raises_from_it, "RuntimeError: the order could not be read"),
        (converts_with_msgspec, "msgspec.ValidationError: Invalid enum value - at `$[...]`"),
    ],
    ids=["own", "raised-from", "msgspec"],
)
def test_the_logged_traceback_keeps_the_frames_not_the_values(
    records: _Records, handler: Any, last_line: str
) -> None:
    body = {"k": SECRET} if handler is converts_with_msgspec else {"age": SECRET}
    _run(f"review31-traceback-{handler.__name__}", handler, body)
    for record in _failures(records):
        printed = logging.Formatter().format(record)
        assert "hunter2" not in printed and "input_value" not in printed, printed
        assert record.exc_info is None  # a handler of its own would print it whole
        assert "Traceback (most recent call last):" in printed
        assert f"in {handler.__name__}" in printed  # the handler's frame is kept
        assert printed.rstrip().endswith(last_line), printed
    if handler is raises_from_it:
        assert "direct cause of the following exception" in printed
        assert f"ValidationError: {AGE_TEXT}" in printed


def test_another_error_is_logged_with_its_exc_info(records: _Records) -> None:
    _run("review31-traceback-plain", fails_plainly, {"age": 1})
    for record in _failures(records):
        assert record.exc_info is not None and isinstance(record.exc_info[1], ConnectionError)


def test_the_async_worker_logs_the_same_traceback(records: _Records) -> None:
    async def main() -> None:
        topic = "review31-traceback-async"
        async with brokerkit.aio.connect("memory://") as broker:
            worker = brokerkit.aio.Worker(broker)

            async def job(body: dict[str, Any]) -> None:
                User.model_validate(body)

            worker.handler(topic, retry=Immediate(max_attempts=2))(job)
            await broker.publish(topic, {"age": SECRET})
            async with worker.running():
                deadline = time.monotonic() + DEADLINE
                while worker.stats()[0].dead_lettered < 1:
                    assert time.monotonic() < deadline, "timed out waiting for the dead letter"
                    await asyncio.sleep(0.02)  # polling with a deadline

    asyncio.run(main())
    for record in _failures(records):
        printed = logging.Formatter().format(record)
        assert "hunter2" not in printed and "in job" in printed, printed
        assert printed.rstrip().endswith(AGE_TEXT), printed


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception groups are Python 3.11's")
def test_error_traceback_masks_a_group_s_members_and_keeps_others() -> None:
    try:
        User.model_validate({"age": SECRET})
    except pydantic.ValidationError as exc:
        invalid = exc
    group = vars(builtins)["BaseExceptionGroup"]("two failed", [invalid, KeyError("kept")])
    assert shows_values(group)
    printed = error_traceback(group)
    assert "hunter2" not in printed, printed
    assert AGE_TEXT in printed and "KeyError: 'kept'" in printed, printed
    assert not shows_values(KeyError("kept"))
