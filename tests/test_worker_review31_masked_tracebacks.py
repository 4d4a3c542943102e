"""The traceback the worker logs with a handler's failure (thirty-first review of the
worker): a pydantic or msgspec validation error the handler raised, or one it raised
another error from, is printed with every frame but without the values it quotes (its
text as the reasons tell it), and the record carries no ``exc_info`` that a handler of
its own would print whole; any other error is logged with its ``exc_info`` as before."""

from __future__ import annotations

import builtins
import enum
import logging
import sys
from typing import Any

import msgspec
import pydantic
import pytest

from brokerkit.worker import Immediate
from brokerkit.worker._tracebacks import error_traceback, shows_values
from tests.worker_runs import WorkerLog, dead_letter, dead_lettered_async, worker_log

__all__ = ["worker_log"]  # fixture

SECRET = "password=hunter2"
AGE_TEXT = (
    "User: age: Input should be a valid integer, unable to parse string as an integer [int_parsing]"
)


class User(pydantic.BaseModel):
    name: str = "bob"
    age: int


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
    dead_letter(topic, handler, body, retry=Immediate(max_attempts=2))


def _failures(log: WorkerLog) -> list[logging.LogRecord]:
    found = [r for r in log.records if " failed on " in r.getMessage()]
    assert len(found) == 2, log.lines
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
    worker_log: WorkerLog, handler: Any, last_line: str
) -> None:
    body = {"k": SECRET} if handler is converts_with_msgspec else {"age": SECRET}
    _run(f"review31-traceback-{handler.__name__}", handler, body)
    for record in _failures(worker_log):
        printed = logging.Formatter().format(record)
        assert "hunter2" not in printed and "input_value" not in printed, printed
        assert record.exc_info is None  # a handler of its own would print it whole
        assert "Traceback (most recent call last):" in printed
        assert f"in {handler.__name__}" in printed  # the handler's frame is kept
        assert printed.rstrip().endswith(last_line), printed
    if handler is raises_from_it:
        assert "direct cause of the following exception" in printed
        assert f"ValidationError: {AGE_TEXT}" in printed


def test_another_error_is_logged_with_its_exc_info(worker_log: WorkerLog) -> None:
    _run("review31-traceback-plain", fails_plainly, {"age": 1})
    for record in _failures(worker_log):
        assert record.exc_info is not None and isinstance(record.exc_info[1], ConnectionError)


def test_the_async_worker_logs_the_same_traceback(worker_log: WorkerLog) -> None:
    async def job(body: dict[str, Any]) -> None:
        User.model_validate(body)

    retry = Immediate(max_attempts=2)
    dead_lettered_async("review31-traceback-async", job, {"age": SECRET}, retry=retry)
    for record in _failures(worker_log):
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
