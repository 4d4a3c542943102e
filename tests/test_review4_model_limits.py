"""Limits a server would enforce only after sending are refused at publish, with
InvalidMessage and nothing sent: an AMQP content type past 255 UTF-8 bytes (kombu), a
NATS JetStream header block past 64 KiB."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from brokerkit import InvalidMessage
from tests.kombu_rabbitmq import kombu_broker, rabbitmq
from tests.nats_server import nats

__all__ = ["kombu_broker", "nats", "rabbitmq"]  # fixtures


def _content_type(utf8_bytes: int) -> str:
    """A content type of exactly ``utf8_bytes`` bytes in UTF-8, most of them two-byte."""
    base = "application/x-"
    rest = utf8_bytes - len(base)
    return base + "é" * (rest // 2) + "a" * (rest % 2)


# -- kombu+amqp: content_type is an AMQP short string -----------------------------------


@pytest.mark.parametrize("size", [255, 254])
def test_kombu_a_content_type_of_255_utf8_bytes_travels(
    kombu_broker: Callable[..., Any], size: int
) -> None:
    broker = kombu_broker()
    subscription = broker.subscribe("ct")
    content_type = _content_type(size)
    broker.publish("ct", b"x", content_type=content_type)
    delivery = subscription.receive(timeout=10)
    assert delivery is not None
    assert delivery.content_type == content_type
    delivery.ack()


@pytest.mark.parametrize("size", [256, 257, 600])
def test_kombu_a_longer_content_type_is_refused_and_nothing_is_sent(
    kombu_broker: Callable[..., Any], size: int
) -> None:
    broker = kombu_broker()
    subscription = broker.subscribe("ct")
    with pytest.raises(InvalidMessage, match="255 bytes") as raised:
        broker.publish_many("ct", [b"first", b"second"], content_type=_content_type(size))
    assert f"{size} bytes" in str(raised.value)
    # nothing was sent, and the broker still works
    broker.publish("ct", b"after")
    delivery = subscription.receive(timeout=10)
    assert delivery is not None and delivery.payload == b"after"
    delivery.ack()
    assert subscription.receive(timeout=0.5) is None
