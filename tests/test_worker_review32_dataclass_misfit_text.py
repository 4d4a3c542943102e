"""The text of a dataclass body that does not fit (thirty-second review of the worker):
one line, its error's text 500 characters at most, in the warning the worker logs as in
the dead letter's reason, as pydantic's and msgspec's texts are. A dataclass's misfit
names the unknown fields a body holds as the body spells them: a key holding a line
break wrote a second line into the log (a line the body's sender chose), and a body of
thousands of unknown keys a log line of every one of them."""

from __future__ import annotations

import dataclasses
import logging
import threading

import pytest

import brokerkit
from brokerkit.worker._error_text import MAX_TEXT

DEADLINE = 10.0
TOPIC = "review32.misfit"


@dataclasses.dataclass
class Line:
    sku: str


@dataclasses.dataclass
class Order:
    order_id: int
    lines: list[Line]


#: A key whose line break would start a log line of the sender's choosing.
FORGED = "x\nCRITICAL brokerkit.worker: all messages were deleted"
BODIES = {
    "a line break": {"order_id": 1, "lines": [{"sku": "A-1", FORGED: 1}]},
    "many keys": {"order_id": 1, "lines": [], **{f"unknown_{n:05}": n for n in range(2000)}},
}


@pytest.mark.parametrize("body", list(BODIES.values()), ids=list(BODIES))
def test_an_unfit_dataclass_body_is_told_on_one_short_line(
    body: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "brokerkit.worker")
    reasons: list[str] = []
    buried = threading.Event()
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)

        @worker.handler(TOPIC)
        def ship(order: Order) -> None:
            raise AssertionError("an unfit body reached the handler")

        @worker.handler(broker.dead_letter_topic(TOPIC))
        def bury(body: dict[str, object], delivery: brokerkit.Delivery) -> None:
            reasons.append(delivery.headers["x-dead-letter-reason"])
            buried.set()

        with worker.running():
            broker.publish(TOPIC, body)
            assert buried.wait(DEADLINE), "the unfit body was not dead-lettered"
    (warning,) = [r.getMessage() for r in caplog.records if "invalid body" in r.getMessage()]
    (reason,) = reasons
    assert reason.startswith("invalid body: Order: unknown field(s) "), reason[:200]
    assert f"has an invalid body: {reason.removeprefix('invalid body: ')}" in warning, warning[:200]
    for text in (warning, reason):
        assert "\n" not in text and "\r" not in text, text[:200]
    told = reason.removeprefix("invalid body: Order: ")
    assert len(told) <= MAX_TEXT + len("...") + len(" at $.lines[0]"), len(told)
