"""The text of an invalid body (thirtieth review of the worker): the warning the worker
logs, the ``x-dead-letter-reason`` of the dead letter and the error on the delivery's
span say what was wrong (the field's path, the validator's message, pydantic's error
type) and never echo what the body holds: the body is on the dead letter for whoever
may read it, but no credential appears in a log line (docs/security.md). pydantic's
``str(ValidationError)`` quotes each input (``input_value='...'``, the whole payload for
JSON it cannot read), msgspec's quotes an enum's or a tag's value; the exception the
worker records carried those as its ``__cause__``."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import time
import traceback
from typing import Annotated, Any, Literal, Union

import msgspec
import pydantic
import pytest

import brokerkit
import brokerkit.aio
from brokerkit.worker._typed import InvalidBody, bind
from tests.waiting import wait_until

#: Every wait in these tests polls with this deadline; none is a sleep.
DEADLINE = 10.0

#: What a body holds and no text may show.
SECRET = "password=hunter2"


class User(pydantic.BaseModel):
    name: str
    age: int


class Cat(pydantic.BaseModel):
    kind: Literal["cat"]


class Dog(pydantic.BaseModel):
    kind: Literal["dog"]


class Pet(pydantic.BaseModel):
    pet: Annotated[Union[Cat, Dog], pydantic.Field(discriminator="kind")]  # noqa: UP007


class Colour(enum.Enum):
    RED = "red"


class Paint(msgspec.Struct):
    colour: Colour


class Mode(msgspec.Struct):
    mode: Literal["fast", "slow"]


class Circle(msgspec.Struct, tag="circle"):
    radius: float


class Square(msgspec.Struct, tag="square"):
    side: float


class Drawing(msgspec.Struct):
    shape: Circle | Square


@dataclasses.dataclass
class Can:
    """A dataclass whose field msgspec validates."""

    paint: Paint


def _handler(annotation: Any) -> Any:
    def job(body: Any) -> None:
        raise AssertionError("never called")

    job.__annotations__["body"] = annotation
    return job


def _dead_lettered(
    annotation: Any, payload: Any, caplog: pytest.LogCaptureFixture, **publish: Any
) -> tuple[str, list[str]]:
    """The reason of ``payload``'s dead letter, published on memory:// to a sync
    worker's handler whose body is annotated ``annotation``, and the worker's log lines."""
    with brokerkit.connect("memory://") as broker, caplog.at_level(logging.WARNING):
        worker = brokerkit.Worker(broker)
        worker.handler("review30-bodies")(_handler(annotation))
        broker.publish("review30-bodies", payload, **publish)
        with worker.running():
            wait_until(
                lambda: worker.stats()[0].dead_lettered == 1,
                "the body dead-lettered",
                within=DEADLINE,
            )
        (dead,) = broker.consume(broker.dead_letter_topic("review30-bodies"), timeout=0)
        dead.ack()
    lines = [r.getMessage() for r in caplog.records if "invalid body" in r.getMessage()]
    assert len(lines) == 1, lines
    return dead.headers["x-dead-letter-reason"], lines


def _unseen(reason: str, lines: list[str]) -> None:
    for text in (reason, *lines):
        assert "hunter2" not in text, text
        assert "input_value" not in text and "errors.pydantic.dev" not in text, text
        assert "\n" not in text and len(text) <= 600, text


# -- pydantic -----------------------------------------------------------------------


def test_pydantic_names_the_field_its_message_and_type_never_the_input(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reason, lines = _dead_lettered(User, {"name": "bob", "age": SECRET}, caplog)
    _unseen(reason, lines)
    text = (
        "User: age: Input should be a valid integer, unable to parse string as an integer "
        "[int_parsing]"
    )
    assert reason == f"invalid body: {text}"
    assert lines[0].endswith(f"has an invalid body: {text}"), lines


def test_pydantic_from_decoded_data_is_shown_the_same(caplog: pytest.LogCaptureFixture) -> None:
    """A msgpack body is decoded, then validated as Python data: the same text."""
    reason, lines = _dead_lettered(
        User, {"name": "bob", "age": SECRET}, caplog, content_type="application/msgpack"
    )
    _unseen(reason, lines)
    assert reason == (
        "invalid body: User: age: Input should be a valid integer, unable to parse string "
        "as an integer [int_parsing]"
    )


def test_pydantic_counts_the_errors_and_lists_each(caplog: pytest.LogCaptureFixture) -> None:
    reason, lines = _dead_lettered(User, {"age": SECRET, "name": [SECRET]}, caplog)
    _unseen(reason, lines)
    assert reason == (
        "invalid body: User: 2 errors: name: Input should be a valid string [string_type]; "
        "age: Input should be a valid integer, unable to parse string as an integer "
        "[int_parsing]"
    )


def test_pydantic_a_discriminator_s_tag_is_not_quoted(caplog: pytest.LogCaptureFixture) -> None:
    """pydantic's message itself quotes the tag found ("Input tag 'x' found using...")."""
    reason, lines = _dead_lettered(Pet, {"pet": {"kind": SECRET}}, caplog)
    _unseen(reason, lines)
    assert reason.startswith("invalid body: Pet: pet: Input tag found using 'kind' "), reason
    assert reason.endswith("[union_tag_invalid]"), reason


def test_pydantic_json_it_cannot_read_but_python_can_is_not_quoted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A byte-order mark: pydantic's JSON parser refuses it (its error quoting the whole
    payload), Python decodes it, and the decoded body does not validate: the JSON
    validation's error is the one given."""
    payload = b'\xef\xbb\xbf{"name": "bob", "age": "' + SECRET.encode() + b'"}'
    reason, lines = _dead_lettered(User, payload, caplog, content_type="application/json")
    _unseen(reason, lines)
    assert reason.startswith("invalid body: User: Invalid JSON: "), reason
    assert reason.endswith("[json_invalid]"), reason


def test_a_validator_s_own_message_is_kept(caplog: pytest.LogCaptureFixture) -> None:
    """What the application's validator says is its own text: kept, as what was wrong."""

    class Adult(pydantic.BaseModel):
        age: int

        @pydantic.field_validator("age")
        @classmethod
        def grown(cls, value: int) -> int:
            if value < 18:
                raise ValueError("must be 18 or over")
            return value

    reason, lines = _dead_lettered(Adult, {"age": 3}, caplog)
    _unseen(reason, lines)
    assert reason == "invalid body: Adult: age: Value error, must be 18 or over [value_error]"


# -- msgspec, and a dataclass holding a Struct ---------------------------------------


@pytest.mark.parametrize(
    ("annotation", "body", "expected"),
    [
        (Paint, {"colour": SECRET}, "Paint: Invalid enum value - at `$.colour`"),
        (Mode, {"mode": SECRET}, "Mode: Invalid enum value - at `$.mode`"),
        (Drawing, {"shape": {"type": SECRET}}, "Drawing: Invalid value - at `$.shape.type`"),
        (Can, {"paint": {"colour": SECRET}}, "Can: Invalid enum value at $.paint.colour"),
    ],
    ids=["enum", "literal", "tag", "dataclass"],
)
def test_msgspec_does_not_quote_a_value_it_refuses(
    caplog: pytest.LogCaptureFixture, annotation: Any, body: Any, expected: str
) -> None:
    reason, lines = _dead_lettered(annotation, body, caplog)
    _unseen(reason, lines)
    assert reason == f"invalid body: {expected}"


def test_msgspec_from_decoded_data_is_shown_the_same(caplog: pytest.LogCaptureFixture) -> None:
    reason, lines = _dead_lettered(
        Paint, {"colour": SECRET}, caplog, content_type="application/msgpack"
    )
    _unseen(reason, lines)
    assert reason == "invalid body: Paint: Invalid enum value - at `$.colour`"


# -- the exception itself: what a span, a hook or a plugin gets ---------------------


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and every ``__cause__`` and ``__context__`` under it, however deep."""
    found: list[BaseException] = []
    todo = [error]
    while todo:
        current = todo.pop()
        if any(current is e for e in found):
            continue
        found.append(current)
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
    return found


@pytest.mark.parametrize(
    ("annotation", "payload", "content_type"),
    [
        (User, b'{"name": "bob", "age": "' + SECRET.encode() + b'"}', "application/json"),
        (User, b'\xef\xbb\xbf{"name": "bob", "age": "' + SECRET.encode() + b'"}', None),
        (User, {"name": "bob", "age": SECRET}, "application/msgpack"),
        (Paint, {"colour": SECRET}, "application/json"),
        (Paint, {"colour": SECRET}, "application/msgpack"),
        (Can, {"paint": {"colour": SECRET}}, "application/json"),
    ],
    ids=["pydantic", "pydantic-bom", "pydantic-msgpack", "msgspec", "msgspec-msgpack", "dc"],
)
def test_the_invalid_body_error_carries_no_input_in_its_chain(
    annotation: Any, payload: Any, content_type: str | None
) -> None:
    """``InvalidBody`` has the text the reason shows, and neither its cause nor its
    context is the library's error that quotes the input: a span's recorded exception
    (its stack trace prints the chain) and a hook's error show the same text."""
    binding = bind(_handler(annotation))
    with brokerkit.connect("memory://") as broker:
        broker.publish("review30-chain", payload, content_type=content_type or "application/json")
        (delivery,) = broker.consume("review30-chain", timeout=0)
        with pytest.raises(InvalidBody) as raised:
            binding.arguments(delivery)
        delivery.ack()
    for error in _chain(raised.value):
        assert "hunter2" not in str(error), (type(error), str(error))
    printed = "".join(traceback.format_exception(raised.value))
    assert "hunter2" not in printed and "input_value" not in printed, printed


def test_the_async_worker_shows_the_same_text(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> str:
        async with brokerkit.aio.connect("memory://") as broker:
            worker = brokerkit.aio.Worker(broker)
            worker.handler("review30-async")(_handler(User))
            await broker.publish("review30-async", {"name": "bob", "age": SECRET})
            async with worker.running():
                deadline = time.monotonic() + DEADLINE
                while worker.stats()[0].dead_lettered < 1:
                    assert time.monotonic() < deadline, "timed out waiting for the dead letter"
                    await asyncio.sleep(0.02)  # polling with a deadline
            topic = broker.dead_letter_topic("review30-async")
            async for dead in broker.consume(topic, timeout=0):
                await dead.ack()
                return str(dead.headers["x-dead-letter-reason"])
        raise AssertionError("no dead letter")

    with caplog.at_level(logging.WARNING):
        reason = asyncio.run(main())
    lines = [r.getMessage() for r in caplog.records if "invalid body" in r.getMessage()]
    _unseen(reason, lines)
    assert reason == (
        "invalid body: User: age: Input should be a valid integer, unable to parse string "
        "as an integer [int_parsing]"
    )


def test_the_span_records_the_same_text() -> None:
    pytest.importorskip("opentelemetry.sdk", reason="needs the opentelemetry extra")
    from tests.spans import recorded_spans

    with recorded_spans() as exported, brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        worker.handler("review30-span")(_handler(User))
        broker.publish("review30-span", {"name": "bob", "age": SECRET})
        with worker.running():
            wait_until(
                lambda: worker.stats()[0].dead_lettered == 1,
                "the body dead-lettered",
                within=DEADLINE,
            )
        (dead,) = broker.consume(broker.dead_letter_topic("review30-span"), timeout=0)
        dead.ack()
    (process,) = [s for s in exported.get_finished_spans() if s.name == "process review30-span"]
    assert "hunter2" not in str(process.status.description)
    (event,) = [e for e in process.events if e.name == "exception"]
    attributes = dict(event.attributes or {})
    assert "int_parsing" in str(attributes["exception.message"])
    for value in attributes.values():
        assert "hunter2" not in str(value) and "input_value" not in str(value), value
