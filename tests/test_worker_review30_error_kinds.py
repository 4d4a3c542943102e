"""Which errors :func:`error_text` reads as a validation library's (thirtieth review of
the worker): pydantic's ``ValidationError`` and msgspec's errors by their class, never
by what an error happens to have (an ``errors`` attribute, a class in a module named
``pydantic_...``); an error whose ``errors`` cannot be read, one of pydantic's that is
not a validation error (``SchemaError``) or one with no errors is shown by its
``str()``; nothing here raises, not in a dataclass body's ``__post_init__`` either."""

from __future__ import annotations

import dataclasses
from typing import Any

import pydantic
import pydantic_core
import pytest

import brokerkit
from brokerkit.worker._error_text import error_text, one_line, quotes_values
from brokerkit.worker._typed import InvalidBody, bind


class BrokenErrors(Exception):
    """Its ``errors`` property raises; its ``str()`` works."""

    @property
    def errors(self) -> Any:
        raise KeyError("errors")


class ErrorsMethod(Exception):
    """A class of its own with an ``errors()`` method (an HTTP client's, a framework's)."""

    def errors(self) -> list[Any]:
        return [{"loc": ("x",), "msg": "not this", "type": "mine"}]


def _in_module(module: str) -> type[Exception]:
    """pydantic_ai's ``ModelRetry`` in shape: not pydantic's, in a ``pydantic_*`` module,
    an ``errors()`` its ``str()`` does not need."""

    def errors(self: Any) -> Any:
        raise TypeError("not a validation error")

    return type("ModelRetry", (Exception,), {"__module__": module, "errors": errors})


def _schema_error() -> pydantic_core.SchemaError:
    try:
        pydantic_core.SchemaValidator({"type": "nope"})
    except pydantic_core.SchemaError as exc:
        return exc
    raise AssertionError("valid")


CASES = [
    pytest.param(BrokenErrors("order 7 failed"), "order 7 failed", id="errors-raises"),
    pytest.param(ErrorsMethod("order 7 failed"), "order 7 failed", id="errors-method"),
    pytest.param(
        _in_module("pydantic_ai.exceptions")("ask again: the total is wrong"),
        "ask again: the total is wrong",
        id="pydantic-ai-model-retry",
    ),
    pytest.param(
        _in_module("msgspec")("not msgspec's"), "not msgspec's", id="named-msgspec-module"
    ),
    pytest.param(_schema_error(), 'Unknown schema type: "nope"', id="schema-error"),
    pytest.param(
        pydantic_core.ValidationError.from_exception_data("Order", []),
        str(pydantic_core.ValidationError.from_exception_data("Order", [])),
        id="no-errors",
    ),
]


@pytest.mark.parametrize(("exc", "expected"), CASES)
def test_an_error_not_a_validation_library_s_is_shown_by_its_str(
    exc: BaseException, expected: str
) -> None:
    assert error_text(exc) == expected
    assert one_line(exc) == " ".join(expected.split())


@pytest.mark.parametrize(("exc", "expected"), CASES[:-1])
def test_none_of_them_is_taken_for_an_error_quoting_values(
    exc: BaseException, expected: str
) -> None:
    """(pydantic's with no errors is pydantic's still: kept out of a chain.)"""
    assert not quotes_values(exc)


class BrokenClass(Exception):
    """Even its ``__class__`` raises."""

    @property  # type: ignore[misc]
    def __class__(self) -> Any:
        raise KeyError("__class__")


def test_an_error_that_lies_about_its_class_does_not_make_them_raise() -> None:
    exc = BrokenClass("order 7 failed")
    assert error_text(exc) == "order 7 failed"
    assert not quotes_values(exc)


def test_a_real_validation_error_is_still_read_without_its_input() -> None:
    class User(pydantic.BaseModel):
        age: int

    with pytest.raises(pydantic.ValidationError) as raised:
        User.model_validate({"age": "password=hunter2"})
    assert quotes_values(raised.value)
    assert error_text(raised.value) == (
        "User: age: Input should be a valid integer, unable to parse string as an integer "
        "[int_parsing]"
    )


def test_a_pydantic_v1_validation_error_is_still_read() -> None:
    from pydantic import v1

    class Old(v1.BaseModel):
        age: int

    with pytest.raises(v1.ValidationError) as raised:
        Old.parse_obj({"age": "password=hunter2"})
    assert quotes_values(raised.value)
    assert error_text(raised.value) == "age: value is not a valid integer [type_error.integer]"


@dataclasses.dataclass
class Order:
    total: int

    def __post_init__(self) -> None:
        raise BrokenErrors(f"total {self.total} is wrong")


def test_a_post_init_error_whose_errors_raise_is_the_body_s_misfit() -> None:
    """Not a KeyError out of the body's build: InvalidBody, with its text and cause."""

    def job(body: Order) -> None:
        raise AssertionError("never called")

    with brokerkit.connect("memory://") as broker:
        broker.publish("review30-error-kinds", {"total": 7})
        (delivery,) = broker.consume("review30-error-kinds", timeout=0)
        with pytest.raises(InvalidBody) as raised:
            bind(job).arguments(delivery)
        delivery.ack()
    assert str(raised.value) == "Order: BrokenErrors: total 7 is wrong"
    assert isinstance(raised.value.__cause__, BrokenErrors)
