"""kombu+amqp: a message another program published with a routing key that is not
UTF-8 is delivered (its routing key escaped) and the messages behind it flow, pulled
(``basic.get``) or pushed (a consumer), with a body or without one; a poison message
whose fields are not UTF-8 is dead-lettered after ``max_deliveries``.

py-amqp raised ``UnicodeDecodeError`` out of the dispatch of its delivery: the receive
failed with it and the message stayed unacknowledged on the channel, known to nobody.
Without a body the dispatch ran inside the read of its content header, which the frame
handler of ec32b7e then read a second time: ``UnexpectedFrame``, the connection lost
on every receive, for ever (every lease of the broker with it). Real RabbitMQ: topics
under the test's own prefix, published to with py-amqp directly; the frame handler's
own cases feed it frames as py-amqp's transport reads them."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import amqp  # type: ignore[import-untyped]
import pytest
from amqp import serialization, spec
from amqp.basic_message import Message  # type: ignore[import-untyped]

from brokerkit.backends.kombu._frames import frame_handler, readable_header
from tests.kombu_rabbitmq import kombu_broker, publish_raw, rabbitmq

__all__ = ["kombu_broker", "rabbitmq"]

Factory = Callable[..., Any]
BAD_KEY = b"rk-\xff"


@pytest.mark.parametrize("pushed", [False, True], ids=["pulled", "pushed"])
@pytest.mark.parametrize("body", [b"", b"body"], ids=["no-body", "body"])
def test_a_routing_key_that_is_not_utf8_is_delivered(
    kombu_broker: Factory, pushed: bool, body: bytes
) -> None:
    broker = kombu_broker(max_deliveries=3, reconnect_timeout=3)
    prefix = broker.options.prefix
    with broker.subscribe("legacy", group="reader") as legacy:
        if pushed:
            assert legacy.receive(timeout=0.2) is None  # a consumer from now on
        publish_raw(
            f"{prefix}|legacy", [(amqp.Message(body), BAD_KEY), (amqp.Message(b"after"), "")]
        )
        got = []
        for _ in range(2):
            delivery = legacy.receive(timeout=5)
            assert delivery is not None
            got.append((delivery.payload, delivery.attempt))
            delivery.ack()
        assert legacy.receive(timeout=0.2) is None  # nothing held back, nothing again
    assert got == [(body, 1), (b"after", 1)]


def test_a_poison_message_not_utf8_anywhere_is_dead_lettered(kombu_broker: Factory) -> None:
    broker = kombu_broker(max_deliveries=2)
    prefix = broker.options.prefix
    dead_letters = broker.subscribe(broker.dead_letter_topic("legacy"))
    with broker.subscribe("legacy", group="reader") as legacy:
        poison = amqp.Message(
            b"", message_id=b"id-\xff", application_headers={b"k\xff": "v", "a": "b"}
        )
        publish_raw(f"{prefix}|legacy", [(poison, BAD_KEY)])
        attempts = []
        for _ in range(2):
            delivery = legacy.receive(timeout=5)
            assert delivery is not None
            attempts.append(delivery.attempt)
            delivery.nack()
        assert legacy.receive(timeout=0.5) is None  # the third is dead-lettered
    dead = dead_letters.receive(timeout=5)
    assert attempts == [1, 2]
    assert dead is not None and dead.payload == b"" and dead.id == "id-\\xff"
    dead.ack()
    dead_letters.close()


def _table(entries: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(bytes([len(k)]) + k + v for k, v in entries)
    return struct.pack(">I", len(body)) + body


def test_a_header_table_rewritten_keeps_the_delivery_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """A content header read again (a property not UTF-8) whose table py-amqp cannot
    read either keeps its other entries, ``x-delivery-count`` among them, so that
    ``max_deliveries`` counts its attempts; the whole table was left out. py-amqp
    5.1.1 (the oldest kombu 5.3 takes) reads a table's names strictly; the installed
    one gives a name that is not UTF-8 as bytes: its reading is made as strict here."""
    tolerant = serialization.loads

    def strict(fmt: str, buf: Any, offset: int) -> Any:
        values, end = tolerant(fmt, buf, offset)
        if fmt == "F" and any(isinstance(key, bytes) for key in values[0]):
            b"\xff".decode("utf-8")
        return values, end

    monkeypatch.setattr(serialization, "loads", strict)
    table = _table(
        [
            (b"k\xff", b"S" + struct.pack(">I", 1) + b"v"),
            (b"x-delivery-count", b"l" + struct.pack(">q", 4)),
        ]
    )
    message_id = b"id-\xff"
    flags = 0x2000 | 0x0080
    header = (
        struct.pack(">HHQH", spec.Basic.CLASS_ID, 0, 0, flags)
        + table
        + bytes([len(message_id)])
        + message_id
    )
    rewritten = readable_header(header)
    monkeypatch.undo()
    message = Message()
    message._load_properties(spec.Basic.CLASS_ID, rewritten, 12)
    assert message.properties["application_headers"] == {"k\\xff": "v", "x-delivery-count": 4}
    assert message.properties["message_id"] == "id-\\xff"


class _Connection:
    bytes_recv = 0


def test_an_error_of_what_a_header_dispatched_is_not_read_again() -> None:
    """A message without a body is dispatched as its content header is read: an
    error raised there (the frame taken in) is raised as it is, and the next frame is
    read as the next; reading the header again failed with ``UnexpectedFrame``."""
    dispatched: list[Any] = []

    def callback(channel: int, method_sig: Any, buf: Any, content: Any) -> None:
        dispatched.append(method_sig)
        if len(dispatched) == 1:
            b"\xff".decode("utf-8")

    handle = frame_handler(_Connection(), callback)
    get_ok = struct.pack(">HHQB", *spec.Basic.GetOk, 1, 0) + b"\x00\x00" + struct.pack(">I", 0)
    header = struct.pack(">HHQH", spec.Basic.CLASS_ID, 0, 0, 0)
    assert handle((1, 1, get_ok)) is False
    with pytest.raises(UnicodeDecodeError):
        handle((2, 1, header))
    assert handle((1, 1, struct.pack(">HH", *spec.Basic.GetEmpty))) is True
    assert dispatched == [spec.Basic.GetOk, spec.Basic.GetEmpty]
