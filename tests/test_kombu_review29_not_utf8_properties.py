"""kombu+amqp: a message another program published with a short-string property
(``message_id``, ``correlation_id``...) or a header name that is not UTF-8 is
delivered, its bad bytes escaped, and the messages behind it flow. py-amqp raised
``UnicodeDecodeError`` out of the read of its content header: every receive of the
group raised it (not a BrokerError) and the message came back to the head of the
queue, for ever, dead-lettered by no ``max_deliveries``. Real RabbitMQ: one topic
under the test's own prefix, published to with py-amqp directly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import amqp  # type: ignore[import-untyped]
import pytest

from tests.kombu_rabbitmq import kombu_broker, publish_raw, rabbitmq

__all__ = ["kombu_broker", "rabbitmq"]

Factory = Callable[..., Any]


@pytest.mark.parametrize("prefetch", [1, 5])
def test_properties_that_are_not_utf8_do_not_poison_the_queue(
    kombu_broker: Factory, prefetch: int
) -> None:
    broker = kombu_broker(max_deliveries=3)
    prefix = broker.options.prefix
    with broker.subscribe("legacy", group="reader", prefetch=prefetch) as legacy:
        publish_raw(
            f"{prefix}|legacy",
            [
                (amqp.Message(b"bad id", message_id=b"id-\xe9\xff", content_type="text/plain"), ""),
                (
                    amqp.Message(
                        b"bad correlation",
                        correlation_id=b"\xff" * 200,
                        application_headers={"trace": "kept"},
                    ),
                    "",
                ),
                (amqp.Message(b"bad header name", application_headers={b"k\xff": "v"}), ""),
                (amqp.Message(b"fine", message_id="plain", application_headers={"a": "b"}), ""),
            ],
        )
        got = []
        for _ in range(4):
            delivery = legacy.receive(timeout=5)
            assert delivery is not None
            got.append((delivery.payload, delivery.id, dict(delivery.headers)))
            delivery.ack()
    assert got == [
        (b"bad id", "id-\\xe9\\xff", {}),
        (b"bad correlation", "", {"trace": "kept"}),
        (b"bad header name", "", {}),
        (b"fine", "plain", {"a": "b"}),
    ]
