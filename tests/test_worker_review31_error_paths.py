"""What a pydantic error's text may show (thirty-first review of the worker): a path's
steps that are a dict's keys come from the body and show as ``*`` (a model's declared
names, list indexes, union members' labels and an unknown field's name are shown);
the message of an application's validator, or of a standard-library error raised in
it, has the values it quotes as ``repr`` does shown as ``'...'``, and a
``PydanticCustomError``'s the values of its context."""

from __future__ import annotations

import enum
from typing import Any

import pydantic
import pytest
from pydantic_core import PydanticCustomError

import brokerkit
from brokerkit.worker._error_text import error_text, masked_quotes

SECRET = "password=hunter2"
INT_TEXT = "Input should be a valid integer, unable to parse string as an integer [int_parsing]"


class Item(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    x: int


class Basket(pydantic.BaseModel):
    items: dict[str, Item] = {}
    lines: list[Item] = []
    either: int | str = 0


def _text(model: Any, value: Any) -> str:
    with pytest.raises(pydantic.ValidationError) as raised:
        pydantic.TypeAdapter(model).validate_python(value)
    assert "hunter2" in str(raised.value)  # what pydantic itself says
    text = error_text(raised.value)
    assert "hunter2" not in text, text
    return text


def test_a_dict_s_key_is_hidden_in_the_path() -> None:
    text = _text(Basket, {"items": {SECRET: {"x": "no"}}})
    assert text == f"Basket: items.*.x: {INT_TEXT}"


def test_a_dict_s_key_that_does_not_validate_is_hidden_before_key() -> None:
    assert _text(dict[int, Item], {SECRET: {"x": 1}}) == f"dict[int,Item]: *.[key]: {INT_TEXT}"


def test_indexes_declared_names_and_union_labels_are_shown() -> None:
    text = _text(Basket, {"lines": [{"x": 1}, {"x": SECRET}], "either": [SECRET]})
    assert text == (
        f"Basket: 3 errors: lines.1.x: {INT_TEXT}; either.int: Input should be a valid "
        "integer [int_type]; either.str: Input should be a valid string [string_type]"
    )


def test_an_unknown_field_s_name_is_shown_a_dict_key_before_it_is_not() -> None:
    text = _text(Basket, {"items": {SECRET: {"x": 1, "colour": SECRET}}})
    assert text == "Basket: items.*.colour: Extra inputs are not permitted [extra_forbidden]"


def test_an_alias_is_a_declared_name() -> None:
    class Aliased(pydantic.BaseModel):
        unit_price: int = pydantic.Field(alias="unitPrice")

    assert _text(Aliased, {"unitPrice": SECRET}) == f"Aliased: unitPrice: {INT_TEXT}"


class Colour(enum.Enum):
    RED = "red"


class Checked(pydantic.BaseModel):
    count: str = "0"
    colour: str = "red"
    size: str = ""
    code: str = ""

    @pydantic.field_validator("count")
    @classmethod
    def a_number(cls, value: str) -> str:
        int(value)  # the standard library's message quotes the value
        return value

    @pydantic.field_validator("colour")
    @classmethod
    def a_colour(cls, value: str) -> str:
        return Colour(value).value

    @pydantic.field_validator("size")
    @classmethod
    def small(cls, value: str) -> str:
        if len(value) > 2:  # as a failed assert (not rewritten here by pytest)
            raise AssertionError(f"size {value!r} is too large")
        return value

    @pydantic.field_validator("code")
    @classmethod
    def known(cls, value: str) -> str:
        raise PydanticCustomError("unknown_code", "code {code} is unknown", {"code": value})


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"count": SECRET},
            "count: Value error, invalid literal for int() with base 10: '...' [value_error]",
        ),
        ({"colour": SECRET}, "colour: Value error, '...' is not a valid Colour [value_error]"),
        ({"size": SECRET}, "size: Assertion failed, size '...' is too large [assertion_error]"),
        ({"code": SECRET}, "code: code '...' is unknown [unknown_code]"),
    ],
    ids=["int", "enum", "assert", "custom"],
)
def test_a_validator_s_message_does_not_quote_the_value(body: Any, expected: str) -> None:
    with pytest.raises(pydantic.ValidationError) as raised:
        Checked.model_validate(body)
    assert error_text(raised.value) == f"Checked: {expected}"


def test_a_validator_s_own_words_are_kept() -> None:
    class Order(pydantic.BaseModel):
        discount: int

        @pydantic.field_validator("discount")
        @classmethod
        def under(cls, value: int) -> int:
            if value >= 100:
                raise ValueError("must be under 100, and can't be 'free'")
            return value

    with pytest.raises(pydantic.ValidationError) as raised:
        Order(discount=150)
    assert error_text(raised.value) == (
        "Order: discount: Value error, must be under 100, and can't be '...' [value_error]"
    )


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            "invalid literal for int() with base 10: 'x'",
            "invalid literal for int() with base 10: '...'",
        ),
        ('"it\'s" is not a valid Colour', "'...' is not a valid Colour"),
        ("bad b'\\x00\\'' here", "bad '...' here"),
        ("can't won't", "can't won't"),
        ("Input should be 'a' or 'b'", "Input should be '...' or '...'"),
    ],
)
def test_masked_quotes(text: str, masked: str) -> None:
    assert masked_quotes(text) == masked


def test_a_typed_body_s_dict_key_is_not_in_the_dead_letter_reason() -> None:
    topic = "review31-dict-key"

    def job(body: Basket) -> None:
        raise AssertionError("never called")

    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        worker.handler(topic)(job)
        broker.publish(topic, {"items": {SECRET: {"x": "no"}}})
        with worker.running():
            from tests.waiting import wait_until

            wait_until(lambda: worker.stats()[0].dead_lettered == 1, "the dead letter", 10.0)
        (dead,) = broker.consume(broker.dead_letter_topic(topic), timeout=0)
        dead.ack()
    assert dead.headers["x-dead-letter-reason"] == f"invalid body: Basket: items.*.x: {INT_TEXT}"
