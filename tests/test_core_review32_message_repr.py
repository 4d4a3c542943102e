"""A Message's repr names the message (id, topic, content type, sizes), never its body
nor its header values: it showed ``payload=b'...'`` and ``headers={...}`` whole, so a
message in a log line, a traceback's locals or a failed assertion leaked a card number
or a bearer token put in a header."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import brokerkit
from brokerkit import Message

BODY = b"card=4111111111111111"
TOKEN = "Bearer s3cr3t-t0ken"


def _check(message: Message) -> None:
    text = repr(message)
    assert BODY.decode() not in text
    assert TOKEN not in text
    assert message.id in text
    assert repr(message.topic) in text
    assert f"{len(BODY)} bytes" in text
    assert str(message) == text


def test_a_message_repr_shows_no_body_and_no_header_value() -> None:
    message = Message("m1", "orders", BODY, "application/octet-stream", {"auth": TOKEN}, 1.5)
    _check(message)
    assert "headers=1" in repr(message)


def test_a_memory_delivery_message_repr_shows_no_body_and_no_header_value() -> None:
    with brokerkit.connect("memory://") as broker:
        broker.publish("orders", BODY, headers={"auth": TOKEN})
        with broker.subscribe("orders") as subscription:
            delivery = subscription.receive(0)
            assert delivery is not None
            _check(delivery.message)
            delivery.ack()


@pytest.mark.parametrize("scheme", ["redis+stream", "redis+list"])
def test_a_redis_delivery_message_repr_shows_no_body_and_no_header_value(
    redis_broker: Callable[..., Any], scheme: str
) -> None:
    broker = redis_broker(scheme)
    broker.publish("orders", BODY, headers={"auth": TOKEN})
    with broker.subscribe("orders") as subscription:
        delivery = subscription.receive(5)
        assert delivery is not None
        _check(delivery.message)
        delivery.ack()
