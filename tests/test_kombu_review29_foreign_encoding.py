"""kombu+amqp: the payload of a message another program published is its AMQP body,
byte for byte, whatever its ``content_encoding`` says. py-amqp decodes the body of a
message whose ``content_encoding`` names a text encoding into a str (its channels'
``auto_decode``), and brokerkit encoded that str in UTF-8: a ``utf-16`` or
``latin-1`` body (as a Java or .NET client may send) reached the application
re-encoded, unlike what its content encoding said. Real RabbitMQ: one topic under the
test's own prefix, published to with py-amqp directly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import amqp  # type: ignore[import-untyped]

from tests.kombu_rabbitmq import kombu_broker, publish_raw, rabbitmq

__all__ = ["kombu_broker", "rabbitmq"]

Factory = Callable[..., Any]

SENT = [
    ("utf-16", "héllo".encode("utf-16")),
    ("latin-1", "héllo".encode("latin-1")),
    ("utf-8", "héllo".encode()),
    ("utf-8", b"\xff not UTF-8"),
]


def test_a_foreign_body_comes_as_it_was_sent(kombu_broker: Factory) -> None:
    broker = kombu_broker()
    prefix = broker.options.prefix
    with broker.subscribe("legacy", group="reader", prefetch=2) as legacy:
        publish_raw(
            f"{prefix}|legacy",
            [
                (amqp.Message(body, content_type="text/plain", content_encoding=encoding), "")
                for encoding, body in SENT
            ],
        )
        got = []
        for _ in SENT:
            delivery = legacy.receive(timeout=5)
            assert delivery is not None
            got.append(delivery.payload)
            delivery.ack()
    assert got == [body for _, body in SENT]
