"""A typed handler gets every application/json body that ``delivery.body`` reads (a
UTF-8 BOM, UTF-16 or UTF-32, a NaN: what other producers write, and what the JSON
parsers of pydantic and msgspec refuse); a body that truly does not validate is still
dead-lettered with the JSON-native validation's reason."""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

import msgspec
import pydantic
import pytest
from amqp import Message as AmqpMessage
from hypothesis import given, settings
from hypothesis import strategies as st

import brokerkit
from brokerkit import Message
from tests.kombu_rabbitmq import kombu_broker, publish_raw, rabbitmq
from tests.test_worker import DEADLINE, dead_letters
from tests.waiting import wait_until

__all__ = ["kombu_broker", "rabbitmq"]


class Order(pydantic.BaseModel):
    order_id: int
    note: str
    score: float = 0.0


class StructOrder(msgspec.Struct):
    order_id: int
    note: str
    score: float = 0.0


def _handler_of(model: type, got: list[Any]) -> Any:
    def handle(body: Any) -> None:
        got.append(body)

    handle.__annotations__["body"] = model
    return handle


def _publish_raw(broker: brokerkit.Broker, payload: bytes) -> None:
    """``payload`` stored as another program would write it: application/json bytes
    that ``publish`` (which encodes a body itself) never writes."""
    message = Message(uuid.uuid4().hex, "typed", payload, "application/json")
    broker._publish("typed", [message])


def _encodings(text: str) -> list[bytes]:
    """``text`` as other producers write JSON: with a UTF-8 BOM, in UTF-16 and UTF-32."""
    return [
        b"\xef\xbb\xbf" + text.encode(),
        text.encode("utf-16"),
        text.encode("utf-16-le"),
        text.encode("utf-32"),
    ]


@pytest.mark.parametrize("model", [Order, StructOrder], ids=lambda m: m.__name__)
@settings(max_examples=15, deadline=None)
@given(
    order_id=st.integers(-(2**53), 2**53),
    note=st.text(st.characters(blacklist_categories=("Cs",)), max_size=10),
)
def test_a_json_body_that_delivery_body_reads_reaches_a_typed_handler(
    model: type, order_id: int, note: str
) -> None:
    text = json.dumps({"order_id": order_id, "note": note})
    payloads = _encodings(text)
    got: list[Any] = []
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        worker.handler("typed", retry=None)(_handler_of(model, got))
        with worker.running():
            for payload in payloads:
                _publish_raw(broker, payload)
            wait_until(
                lambda: len(got) + broker.inspect("typed").dead_lettered == len(payloads),
                "every payload handled or dead-lettered",
                within=DEADLINE,
            )
        assert dead_letters(broker, "typed") == []
    assert got == [model(order_id=order_id, note=note)] * len(payloads)


@pytest.mark.parametrize("model", [Order, StructOrder], ids=lambda m: m.__name__)
def test_a_nan_in_a_json_body_reaches_a_typed_handler(model: type) -> None:
    got: list[Any] = []
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        worker.handler("typed", retry=None)(_handler_of(model, got))
        with worker.running():
            _publish_raw(broker, b'{"order_id": 1, "note": "n", "score": NaN}')
            wait_until(
                lambda: got or broker.inspect("typed").dead_lettered,
                "the message handled or dead-lettered",
                within=DEADLINE,
            )
        assert dead_letters(broker, "typed") == []
    (body,) = got
    assert type(body) is model and math.isnan(body.score)


@pytest.mark.parametrize("model", [Order, StructOrder], ids=lambda m: m.__name__)
@pytest.mark.parametrize(
    "payload",
    [b'{"order_id": "x", "note": "n"}', b'\xef\xbb\xbf{"order_id": 1}', b"[1, 2]"],
    ids=["wrong-type", "bom-missing-field", "array"],
)
def test_a_json_body_that_does_not_validate_is_dead_lettered_with_the_json_reason(
    model: type, payload: bytes
) -> None:
    got: list[Any] = []
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        worker.handler("typed", retry=None)(_handler_of(model, got))
        with worker.running():
            _publish_raw(broker, payload)
            wait_until(
                lambda: broker.inspect("typed").dead_lettered == 1,
                "the dead letter",
                within=DEADLINE,
            )
        (dead,) = dead_letters(broker, "typed")
    reason = dead.headers["x-dead-letter-reason"]
    assert reason.startswith(f"invalid body: {model.__name__}: "), reason
    assert got == []


def test_a_bom_json_body_from_another_amqp_producer_reaches_typed_handlers(
    kombu_broker: Any,
) -> None:
    """As .NET or PowerShell write it, straight to RabbitMQ."""
    broker = kombu_broker()
    got: dict[str, list[Any]] = {"pydantic": [], "msgspec": []}
    worker = brokerkit.Worker(broker)
    worker.handler("orders", group="pydantic", name="p", retry=None)(
        _handler_of(Order, got["pydantic"])
    )
    worker.handler("orders", group="msgspec", name="m", retry=None)(
        _handler_of(StructOrder, got["msgspec"])
    )
    for group in got:
        broker.subscribe("orders", group=group).close()
    raw = AmqpMessage(b'\xef\xbb\xbf{"order_id": 7, "note": "n"}', content_type="application/json")
    publish_raw(f"{broker.options.prefix}|orders", [(raw, "")])
    with worker.running():
        wait_until(
            lambda: all(got.values()) or broker.inspect("orders").dead_lettered,
            "the message handled by both handlers, or a dead letter",
            within=DEADLINE,
        )
    assert broker.inspect("orders").dead_lettered == 0
    assert got == {"pydantic": [Order(order_id=7, note="n")], "msgspec": [StructOrder(7, "n")]}


def test_a_json_body_msgspec_reads_but_refuses_is_not_validated_laxly() -> None:
    """The fallback to the decoded body is for JSON the parser cannot read; a body it
    reads and refuses (text where a Struct wants an int) is dead-lettered, not converted
    as a msgpack body would be."""
    got: list[Any] = []
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        worker.handler("typed", retry=None)(_handler_of(StructOrder, got))
        with worker.running():
            _publish_raw(broker, b'{"order_id": "7", "note": "n"}')
            wait_until(
                lambda: broker.inspect("typed").dead_lettered == 1,
                "the dead letter",
                within=DEADLINE,
            )
        (dead,) = dead_letters(broker, "typed")
    assert "Expected `int`, got `str`" in dead.headers["x-dead-letter-reason"]
    assert got == []
