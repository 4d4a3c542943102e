"""The text of a validation error wherever it is raised (thirtieth review of the worker):
a pydantic ``ValidationError`` or a msgspec one raised by a handler itself (its own
``model_validate``), by a dataclass body's ``__post_init__`` (a ``TypeAdapter``'s
check) or wrapped by msgspec from a Struct's ``__post_init__`` says what was wrong in
the retry and dead-letter reasons, the worker's log lines and the span's status, on one
line, never the values it refused (``str()`` quotes them: ``input_value='...'``); and
msgspec's text loses only the value it quotes, never an application's own message
(``Invalid value for discount: ...``) nor a dict key's path."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import time
import traceback
from typing import Any

import msgspec
import pydantic
import pytest

import brokerkit
import brokerkit.aio
from brokerkit.worker import Immediate
from brokerkit.worker._error_text import error_text, msgspec_text, one_line
from brokerkit.worker._typed import InvalidBody, bind
from tests.waiting import wait_until

#: Every wait in these tests polls with this deadline; none is a sleep.
DEADLINE = 10.0

#: What a body holds and no text may show.
SECRET = "password=hunter2"

#: pydantic's text of the ``age`` below, without the input.
AGE_TEXT = (
    "age: Input should be a valid integer, unable to parse string as an integer [int_parsing]"
)


class User(pydantic.BaseModel):
    name: str
    age: int


class Colour(enum.Enum):
    RED = "red"


class Paint(msgspec.Struct):
    colour: Colour


def _pydantic_error() -> pydantic.ValidationError:
    try:
        User.model_validate({"name": "bob", "age": SECRET})
    except pydantic.ValidationError as exc:
        return exc
    raise AssertionError("valid")


def _msgspec_error(body: bytes, model: Any) -> msgspec.ValidationError:
    try:
        msgspec.json.decode(body, type=model)
    except msgspec.ValidationError as exc:
        return exc
    raise AssertionError("valid")


def _unseen(*texts: str) -> None:
    for text in texts:
        assert "hunter2" not in text, text
        assert "input_value" not in text and "errors.pydantic.dev" not in text, text
        assert "\n" not in text and len(text) <= 600, text


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


# -- error_text and one_line: every caller's text -----------------------------------


def test_a_pydantic_error_s_text_names_what_was_wrong_never_the_input() -> None:
    error = _pydantic_error()
    assert "hunter2" in str(error)  # what pydantic itself says
    assert error_text(error) == f"User: {AGE_TEXT}"
    assert one_line(error) == f"User: {AGE_TEXT}"


def test_a_type_adapter_s_error_is_named_by_its_type() -> None:
    with pytest.raises(pydantic.ValidationError) as raised:
        pydantic.TypeAdapter(int).validate_python(SECRET)
    assert error_text(raised.value) == (
        "int: Input should be a valid integer, unable to parse string as an integer [int_parsing]"
    )


def test_a_msgspec_error_s_text_does_not_quote_the_value() -> None:
    error = _msgspec_error(b'{"colour": "' + SECRET.encode() + b'"}', Paint)
    assert "hunter2" in str(error)
    assert error_text(error) == "Invalid enum value - at `$.colour`"


def test_msgspec_wrapping_a_struct_s_pydantic_check_shows_pydantic_s_text() -> None:
    """msgspec makes a ValidationError of what a __post_init__ raised, with its text:
    pydantic's, with the input."""
    ages = pydantic.TypeAdapter(int)

    class Person(msgspec.Struct):
        age: Any

        def __post_init__(self) -> None:
            self.age = ages.validate_python(self.age)

    class Team(msgspec.Struct):
        lead: Person

    error = _msgspec_error(b'{"lead": {"age": "' + SECRET.encode() + b'"}}', Team)
    assert "hunter2" in str(error)
    assert msgspec_text(error) == (
        "int: Input should be a valid integer, unable to parse string as an integer "
        "[int_parsing] - at `$.lead`"
    )


def test_a_pydantic_validator_s_msgspec_check_does_not_quote_the_value() -> None:
    class Pot(pydantic.BaseModel):
        colour: Any

        @pydantic.field_validator("colour")
        @classmethod
        def known(cls, value: Any) -> Colour:
            return msgspec.convert(value, Colour)

    with pytest.raises(pydantic.ValidationError) as raised:
        Pot(colour=SECRET)
    assert error_text(raised.value) == (
        "Pot: colour: Value error, Invalid enum value [value_error]"
    )


# -- a handler's own validation error: reasons and log lines ------------------------


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _handler(check: Any) -> Any:
    def job(body: dict[str, Any]) -> None:
        check(body)

    return job


def _validates_user(body: dict[str, Any]) -> None:
    User.model_validate(body["user"])  # the handler validates a part itself


def _validates_paint(body: dict[str, Any]) -> None:
    msgspec.convert(body["user"], Paint)


@pytest.mark.parametrize(
    ("check", "user", "expected"),
    [
        (_validates_user, {"name": "bob", "age": SECRET}, f"ValidationError: User: {AGE_TEXT}"),
        (
            _validates_paint,
            {"colour": SECRET},
            "ValidationError: Invalid enum value - at `$.colour`",
        ),
    ],
    ids=["pydantic", "msgspec"],
)
def test_a_handler_s_own_validation_error_is_shown_without_the_input(
    check: Any, user: Any, expected: str
) -> None:
    """Retried once, then dead-lettered: both reasons and every log line."""
    topic = f"review30-handler-{check.__name__}"
    lines = _Lines()
    logger = logging.getLogger("brokerkit")
    logger.addHandler(lines)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        with brokerkit.connect("memory://") as broker:
            worker = brokerkit.Worker(broker)
            worker.handler(topic, retry=Immediate(max_attempts=2))(_handler(check))
            broker.publish(topic, {"user": user})
            with worker.running():
                wait_until(
                    lambda: worker.stats()[0].dead_lettered == 1,
                    "the message dead-lettered",
                    within=DEADLINE,
                )
            (dead,) = broker.consume(broker.dead_letter_topic(topic), timeout=0)
            dead.ack()
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
    reason = str(dead.headers["x-dead-letter-reason"])
    failed = [line for line in lines.lines if f"job failed on {dead.id}" in line]
    assert len(failed) == 2, lines.lines
    _unseen(reason, *lines.lines)
    assert reason == expected
    assert failed[0].endswith(f"retried in 0 s: {expected}"), failed
    assert failed[1].endswith(f"dead-lettered: {expected}"), failed


def test_the_async_worker_shows_a_handler_s_validation_error_the_same() -> None:
    lines = _Lines()
    logger = logging.getLogger("brokerkit")
    logger.addHandler(lines)
    level = logger.level
    logger.setLevel(logging.DEBUG)

    async def main() -> str:
        async with brokerkit.aio.connect("memory://") as broker:
            worker = brokerkit.aio.Worker(broker)
            handler = _handler(_validates_user)
            worker.handler("review30-handler-async", retry=Immediate(max_attempts=2))(handler)
            await broker.publish("review30-handler-async", {"user": {"age": SECRET}})
            async with worker.running():
                deadline = time.monotonic() + DEADLINE
                while worker.stats()[0].dead_lettered < 1:
                    assert time.monotonic() < deadline, "timed out waiting for the dead letter"
                    await asyncio.sleep(0.02)  # polling with a deadline
            topic = broker.dead_letter_topic("review30-handler-async")
            async for dead in broker.consume(topic, timeout=0):
                await dead.ack()
                return str(dead.headers["x-dead-letter-reason"])
        raise AssertionError("no dead letter")

    try:
        reason = asyncio.run(main())
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
    _unseen(reason, *lines.lines)
    name = "name: Field required [missing]"
    assert reason == f"ValidationError: User: 2 errors: {name}; {AGE_TEXT}"
    assert sum("job failed on" in line for line in lines.lines) == 2, lines.lines


def test_the_span_status_shows_a_handler_s_validation_error_without_the_input() -> None:
    pytest.importorskip("opentelemetry.sdk", reason="needs the opentelemetry extra")
    from tests.spans import recorded_spans

    topic = "review30-handler-span"
    with recorded_spans() as exported, brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        worker.handler(topic, retry=Immediate(max_attempts=1))(_handler(_validates_user))
        broker.publish(topic, {"user": {"name": "bob", "age": SECRET}})
        with worker.running():
            wait_until(
                lambda: worker.stats()[0].dead_lettered == 1,
                "the message dead-lettered",
                within=DEADLINE,
            )
        (dead,) = broker.consume(broker.dead_letter_topic(topic), timeout=0)
        dead.ack()
    (process,) = [s for s in exported.get_finished_spans() if s.name == f"process {topic}"]
    assert process.status.description == f"ValidationError: User: {AGE_TEXT}"


# -- a dataclass body's __post_init__ check ----------------------------------------


_ages = pydantic.TypeAdapter(int)


@dataclasses.dataclass
class Person:
    age: Any

    def __post_init__(self) -> None:
        self.age = _ages.validate_python(self.age)  # a pydantic check in __post_init__


@dataclasses.dataclass
class Pot:
    colour: Any

    def __post_init__(self) -> None:
        self.colour = msgspec.convert(self.colour, Colour)  # a msgspec one


@dataclasses.dataclass
class Crew:
    lead: Person


@pytest.mark.parametrize(
    ("annotation", "body", "expected"),
    [
        (
            Person,
            {"age": SECRET},
            "Person: int: Input should be a valid integer, unable to parse string as an "
            "integer [int_parsing]",
        ),
        (
            Crew,
            {"lead": {"age": SECRET}},
            "Crew: int: Input should be a valid integer, unable to parse string as an "
            "integer [int_parsing] at $.lead",
        ),
        (Pot, {"colour": SECRET}, "Pot: Invalid enum value"),
    ],
    ids=["pydantic", "pydantic-nested", "msgspec"],
)
def test_a_dataclass_s_post_init_check_is_shown_without_the_input(
    annotation: Any, body: Any, expected: str
) -> None:
    """Its text, and neither InvalidBody's cause nor its context holds the library's
    error (a span's recorded exception prints the chain)."""

    def job(body: Any) -> None:
        raise AssertionError("never called")

    job.__annotations__["body"] = annotation
    binding = bind(job)
    with brokerkit.connect("memory://") as broker:
        broker.publish("review30-post-init", body)
        (delivery,) = broker.consume("review30-post-init", timeout=0)
        with pytest.raises(InvalidBody) as raised:
            binding.arguments(delivery)
        delivery.ack()
    assert str(raised.value) == expected
    for error in _chain(raised.value):
        assert "hunter2" not in str(error), (type(error), str(error))
    printed = "".join(traceback.format_exception(raised.value))
    assert "hunter2" not in printed and "input_value" not in printed, printed


@dataclasses.dataclass
class Order:
    discount: int

    def __post_init__(self) -> None:
        if self.discount >= 100:
            raise ValueError("must be under 100")


def test_a_dataclass_s_own_post_init_error_keeps_its_cause() -> None:
    """Not a validation library's: the chain is kept, as before."""

    def job(body: Order) -> None:
        raise AssertionError("never called")

    with brokerkit.connect("memory://") as broker:
        broker.publish("review30-post-init-own", {"discount": 150})
        (delivery,) = broker.consume("review30-post-init-own", timeout=0)
        with pytest.raises(InvalidBody) as raised:
            bind(job).arguments(delivery)
        delivery.ack()
    assert str(raised.value) == "Order: must be under 100"
    assert isinstance(raised.value.__cause__, ValueError)
