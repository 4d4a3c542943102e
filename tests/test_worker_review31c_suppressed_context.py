"""A handler's error raised ``from None`` inside ``except ValidationError`` is logged
with its ``exc_info``, as any other error is: Python's print of it leaves the
suppressed context out, so it quotes no value. The masking took the suppressed
validation error as shown, and logged the error without ``exc_info`` (a handler of the
application's own lost the traceback object for nothing)."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from brokerkit.worker import Immediate
from brokerkit.worker._tracebacks import shows_values
from tests.worker_runs import WorkerLog, dead_letter, worker_log

__all__ = ["worker_log"]  # a fixture

SECRET = "password=hunter2"


class _User(pydantic.BaseModel):
    age: int


def _hiding_handler(body: Any) -> None:
    try:
        _User.model_validate({"age": body["age"]})
    except pydantic.ValidationError:
        raise ValueError("bad age") from None


def test_an_error_raised_from_none_is_logged_with_its_exc_info(worker_log: WorkerLog) -> None:
    dead_letter("t.suppressed", _hiding_handler, {"age": SECRET}, retry=Immediate(max_attempts=1))
    failures = [r for r in worker_log.records if r.exc_info or r.exc_text]
    assert failures, worker_log.lines
    assert all(r.exc_info is not None for r in failures), [r.getMessage() for r in failures]
    assert SECRET not in worker_log.printed()


def _failing(suppress: bool) -> None:
    try:
        _User.model_validate({"age": SECRET})
    except pydantic.ValidationError:
        if suppress:
            raise ValueError("bad age") from None
        raise ValueError("bad age")  # noqa: B904 (its context is printed: the point)


def test_only_a_context_not_suppressed_counts_as_shown() -> None:
    with pytest.raises(ValueError, match="bad age") as shown:
        _failing(suppress=False)
    assert shows_values(shown.value)
    with pytest.raises(ValueError, match="bad age") as hidden:
        _failing(suppress=True)
    assert not shows_values(hidden.value)
