"""What an invalid typed body's text shows (review 31b of the worker, after 31's
masking of pydantic's text): a dataclass body's dict key in a path shows as msgspec
shows it, ``[...]`` (it showed ``$.by_name['the key']``); the message of a dataclass's
or a msgspec Struct's ``__post_init__`` (or of an error a validator raises that
pydantic does not wrap) has the values it quotes as ``repr`` does shown as ``'...'``,
as a pydantic validator's message has; such an error is not the invalid body's cause
(a span's exception event prints the chain), nor shown whole in the traceback the
worker logs for a handler's own msgspec error. A message that quotes nothing is kept,
and stays the cause."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pydantic
import pytest

import brokerkit
from brokerkit.worker import Immediate, InvalidBody
from brokerkit.worker._typed import bind
from tests.worker_runs import WorkerLog, dead_letter, worker_log

__all__ = ["worker_log"]  # fixture

SECRET = "password=hunter2"


@dataclass
class Point:
    x: int
    y: int


@dataclass
class Shipment:
    by_name: dict[str, Point] = field(default_factory=dict)
    nested: dict[str, list[dict[str, Point]]] = field(default_factory=dict)


def _check(code: str) -> None:
    """A __post_init__'s check, which an application writes so."""
    if code.startswith("bad"):
        raise ValueError(f"unknown code {code!r}")
    if code.startswith("key"):
        raise KeyError(code)
    if code.startswith("int"):
        int(code)  # invalid literal for int() with base 10: '...'
    if code.startswith("plain"):
        raise ValueError("the code is too long")


@dataclass
class Checked:
    code: str

    def __post_init__(self) -> None:
        _check(self.code)


@dataclass
class Order:
    lines: list[Checked]


class Line(msgspec.Struct):
    code: str

    def __post_init__(self) -> None:
        _check(self.code)


class StructOrder(msgspec.Struct):
    lines: list[Line]


class Coded(pydantic.BaseModel):
    code: str

    @pydantic.field_validator("code")
    @classmethod
    def known(cls, code: str) -> str:
        raise LookupError(f"no code {code!r}")  # not a ValueError: pydantic lets it go


def _dead_letter_reason(topic: str, body_type: Any, body: Any, serializer: str = "json") -> str:
    """``body`` published to a worker whose handler takes ``body_type``: the reason of
    its dead letter (a memory broker)."""

    def job(body: Any) -> None:
        raise AssertionError("never called")

    job.__annotations__["body"] = body_type
    dead = dead_letter(topic, job, body, serializer=serializer)
    reason: str = dead.headers["x-dead-letter-reason"]
    return reason


def _invalid(body_type: Any, body: Any, serializer: str = "json") -> InvalidBody:
    """The InvalidBody the worker gets for ``body`` received as ``body_type``."""

    def job(body: Any) -> None:
        raise AssertionError("never called")

    job.__annotations__["body"] = body_type
    with brokerkit.connect("memory://", serializer=serializer) as broker:
        broker.publish("review31b-invalid", body)
        (delivery,) = broker.consume("review31b-invalid", timeout=0)
        try:
            with pytest.raises(InvalidBody) as raised:
                bind(job).arguments(delivery)
        finally:
            delivery.ack()
    # What a span's exception event prints: the error and its chain.
    printed = "".join(traceback.format_exception(raised.value))
    assert "hunter2" not in printed, printed
    return raised.value


# -- a dataclass body's dict keys ----------------------------------------------------


def test_a_dataclass_body_s_dict_key_is_not_in_the_dead_letter_reason(
    worker_log: WorkerLog,
) -> None:
    reason = _dead_letter_reason("review31b-dc-key", Shipment, {"by_name": {SECRET: {"y": 1}}})
    assert reason == "invalid body: Shipment: missing field(s) x at $.by_name[...]"
    assert "hunter2" not in worker_log.printed(), worker_log.printed()


def test_each_dict_key_of_a_path_shows_as_msgspec_shows_it() -> None:
    body = {"nested": {SECRET: [{}, {SECRET + "2": {"x": 1}}]}}
    invalid = _invalid(Shipment, body)
    assert str(invalid) == "Shipment: missing field(s) y at $.nested[...][1][...]"


# -- a __post_init__'s message -------------------------------------------------------

#: A line's code, and what the reason says of it (its path follows).
CHECKS = [
    ("bad " + SECRET, "unknown code '...'"),
    ("int " + SECRET, "invalid literal for int() with base 10: '...'"),
]


@pytest.mark.parametrize(("code", "shown"), CHECKS, ids=["own-repr", "int()"])
def test_a_dataclass_s_post_init_message_has_its_quoted_values_masked(
    worker_log: WorkerLog, code: str, shown: str
) -> None:
    reason = _dead_letter_reason(
        f"review31b-dc-post-init-{code[:3]}", Order, {"lines": [{"code": code}]}
    )
    assert reason == f"invalid body: Order: {shown} at $.lines[0]"
    assert "hunter2" not in worker_log.printed(), worker_log.printed()
    invalid = _invalid(Order, {"lines": [{"code": code}]})
    assert invalid.__cause__ is None or "hunter2" not in str(invalid.__cause__)


def test_a_dataclass_s_post_init_key_error_is_masked_and_named() -> None:
    invalid = _invalid(Order, {"lines": [{"code": "key " + SECRET}]})
    assert str(invalid) == "Order: KeyError: '...' at $.lines[0]"


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
@pytest.mark.parametrize(("code", "shown"), CHECKS, ids=["own-repr", "int()"])
def test_a_struct_s_post_init_message_has_its_quoted_values_masked(
    worker_log: WorkerLog, serializer: str, code: str, shown: str
) -> None:
    reason = _dead_letter_reason(
        f"review31b-struct-post-init-{serializer}-{code[:3]}",
        StructOrder,
        {"lines": [{"code": code}]},
        serializer,
    )
    assert reason == f"invalid body: StructOrder: {shown} - at `$.lines[0]`"
    assert "hunter2" not in worker_log.printed(), worker_log.printed()
    _invalid(StructOrder, {"lines": [{"code": code}]}, serializer)


@pytest.mark.parametrize(
    ("body_type", "code", "text"),
    [
        (StructOrder, "key " + SECRET, "StructOrder: KeyError: '...'"),
        (Coded, "x " + SECRET, "Coded: LookupError: no code '...'"),
    ],
    ids=["struct-key-error", "pydantic-lookup-error"],
)
def test_an_error_the_library_does_not_wrap_is_masked(body_type: Any, code: str, text: str) -> None:
    body = {"lines": [{"code": code}]} if body_type is StructOrder else {"code": code}
    invalid = _invalid(body_type, body)
    assert str(invalid) == text
    assert invalid.__cause__ is None and invalid.__context__ is None


@pytest.mark.parametrize(("body_type", "path"), [(Order, " at $.lines[0]"), (StructOrder, None)])
def test_a_message_that_quotes_nothing_is_kept_with_its_cause(
    body_type: Any, path: str | None
) -> None:
    invalid = _invalid(body_type, {"lines": [{"code": "plain"}]})
    if path is not None:  # a dataclass's: its error is the cause, with its frames
        assert str(invalid) == f"Order: the code is too long{path}"
        assert isinstance(invalid.__cause__, ValueError)
        assert "in __post_init__" in "".join(traceback.format_exception(invalid))
    else:
        assert str(invalid) == "StructOrder: the code is too long - at `$.lines[0]`"


# -- a handler's own msgspec error, raised from a __post_init__'s -------------------


def test_the_logged_traceback_masks_the_post_init_error_under_msgspec_s(
    worker_log: WorkerLog,
) -> None:
    topic = "review31b-own-struct"

    def job(body: dict[str, Any]) -> None:
        msgspec.convert(body, StructOrder)

    body = {"lines": [{"code": "bad " + SECRET}]}
    dead = dead_letter(topic, job, body, retry=Immediate(max_attempts=1))
    assert dead.headers["x-dead-letter-reason"] == (
        "ValidationError: unknown code '...' - at `$.lines[0]`"
    )
    printed = worker_log.printed()
    assert "hunter2" not in printed, printed
    assert "in job" in printed and "in __post_init__" in printed, printed  # frames kept
    assert "ValueError: unknown code '...'" in printed, printed
    assert "msgspec.ValidationError: unknown code '...' - at `$.lines[0]`" in printed, printed
