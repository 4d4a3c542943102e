"""msgspec's text without the value it quotes (thirtieth review of the worker): only
msgspec's own ``Invalid enum value 'x'`` / ``Invalid value 'x'`` (the value as its repr
or an int, then its path) loses its value; an application's own message that starts
the same (a Struct's ``__post_init__``: ``Invalid value for discount: ...``) is shown
as it is, and a refused dict key keeps its path (`` - at `key` in `$.k` ``)."""

from __future__ import annotations

import enum
from typing import Any, Literal

import msgspec
import pytest

import brokerkit
from brokerkit.worker._error_text import msgspec_text
from brokerkit.worker._typed import InvalidBody, bind

SECRET = "password=hunter2"


class Colour(enum.Enum):
    RED = "red"


class Size(enum.IntEnum):
    SMALL = 1


class Order(msgspec.Struct):
    discount: int

    def __post_init__(self) -> None:
        if self.discount >= 100:
            raise ValueError("Invalid value for discount: must be under 100")


class Palette(msgspec.Struct):
    k: dict[Colour, int]


class Sizes(msgspec.Struct):
    k: dict[Size, int]


class Mode(msgspec.Struct):
    mode: Literal["fast", "slow"]


class Circle(msgspec.Struct, tag=1):
    radius: float


class Square(msgspec.Struct, tag=2):
    side: float


class Drawing(msgspec.Struct):
    shape: Circle | Square


def _text(body: Any, model: Any) -> tuple[str, str]:
    """msgspec's own text of ``body`` refused as ``model``, and :func:`msgspec_text`'s."""
    try:
        msgspec.json.decode(msgspec.json.encode(body), type=model)
    except msgspec.ValidationError as exc:
        return str(exc), msgspec_text(exc)
    raise AssertionError("valid")


def test_an_application_s_own_message_is_shown_as_it_is() -> None:
    plain, text = _text({"discount": 150}, Order)
    assert text == plain == "Invalid value for discount: must be under 100"


def test_the_worker_s_reason_keeps_the_application_s_message() -> None:
    def job(body: Order) -> None:
        raise AssertionError("never called")

    with brokerkit.connect("memory://") as broker:
        broker.publish("review30-msgspec-own", {"discount": 150})
        (delivery,) = broker.consume("review30-msgspec-own", timeout=0)
        with pytest.raises(InvalidBody) as raised:
            bind(job).arguments(delivery)
        delivery.ack()
    assert str(raised.value) == "Order: Invalid value for discount: must be under 100"


@pytest.mark.parametrize(
    ("body", "model", "expected"),
    [
        ({"k": {SECRET: 1}}, Palette, "Invalid enum value - at `key` in `$.k`"),
        ({"k": {"7": 1}}, Sizes, "Invalid enum value - at `key` in `$.k`"),
        ({"mode": SECRET}, Mode, "Invalid enum value - at `$.mode`"),
        ({"shape": {"type": 9}}, Drawing, "Invalid value - at `$.shape.type`"),
        # a value whose repr is in double quotes, escapes a quote, or looks like a path
        ({"mode": "it's " + SECRET}, Mode, "Invalid enum value - at `$.mode`"),
        ({"mode": "it's \"" + SECRET}, Mode, "Invalid enum value - at `$.mode`"),
        ({"k": {SECRET + "' - at `$.x`": 1}}, Palette, "Invalid enum value - at `key` in `$.k`"),
    ],
    ids=["dict-key", "int-dict-key", "literal", "int-tag", "double-quoted", "escaped", "path"],
)
def test_only_the_value_msgspec_quotes_is_left_out(body: Any, model: Any, expected: str) -> None:
    plain, text = _text(body, model)
    assert text == expected, plain
    assert "hunter2" not in text


def test_a_value_at_the_top_has_no_path() -> None:
    with pytest.raises(msgspec.ValidationError) as raised:
        msgspec.convert(SECRET, Colour)
    assert msgspec_text(raised.value) == "Invalid enum value"


class Card(msgspec.Struct, tag="card"):
    number: str = ""


class Cash(msgspec.Struct, tag="cash"):
    pass


class Payment(msgspec.Struct):
    payment: Card | Cash


#: Tags msgspec's decoders write as they are, not as their repr (``Invalid value 'it's'``).
RAW_TAGS = ["card 4111-1111 exp 12/29 cvv '123'", "pa'ss w0rd", "\\", "x\"y ' - at `$.x`", "a\nb'"]


@pytest.mark.parametrize("tag", RAW_TAGS, ids=["card", "quote", "backslash", "path", "newline"])
@pytest.mark.parametrize("how", ["json", "msgpack", "convert"])
def test_a_refused_tag_written_as_it_is_is_left_out(tag: str, how: str) -> None:
    body = {"payment": {"type": tag}}
    try:
        if how == "json":
            msgspec.json.decode(msgspec.json.encode(body), type=Payment)
        elif how == "msgpack":
            msgspec.msgpack.decode(msgspec.msgpack.encode(body), type=Payment)
        else:
            msgspec.convert(body, Payment)
    except msgspec.ValidationError as exc:
        plain, text = str(exc), msgspec_text(exc)
    else:
        raise AssertionError("valid")
    assert text == "Invalid value - at `$.payment.type`", plain


def test_the_worker_s_reason_leaves_a_raw_tag_out() -> None:
    def job(body: Payment) -> None:
        raise AssertionError("never called")

    with brokerkit.connect("memory://") as broker:
        broker.publish("review30-msgspec-raw-tag", {"payment": {"type": "cvv '123' " + SECRET}})
        (delivery,) = broker.consume("review30-msgspec-raw-tag", timeout=0)
        with pytest.raises(InvalidBody) as raised:
            bind(job).arguments(delivery)
        delivery.ack()
    assert str(raised.value) == "Payment: Invalid value - at `$.payment.type`"


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ("Invalid value for discount: must be under 100",) * 2,
        # the values it quotes as repr does are masked (review 31b)
        ("Invalid value 'x' is not allowed here", "Invalid value '...' is not allowed here"),
        ("Invalid value of 'x'", "Invalid value of '...'"),
    ],
)
def test_an_application_s_message_that_is_not_msgspec_s_form_is_kept(
    message: str, shown: str
) -> None:
    with pytest.raises(msgspec.ValidationError) as raised:
        msgspec.convert({"message": message}, _Raising)
    assert str(raised.value) == message
    assert msgspec_text(raised.value) == shown


class _Raising(msgspec.Struct):
    message: str

    def __post_init__(self) -> None:
        raise ValueError(self.message)
