"""kombu+amqp: a publish keeps room in the frame for the headers a dead letter adds.

A message whose headers just fit in one AMQP frame was published, and its dead letter
(three headers more: x-dead-letter-reason, x-original-topic, x-deliveries) then did
not fit: it was dead-lettered with every header of its own dropped. A publish now
refuses such a message, with InvalidMessage naming the sizes and the limit, and one
that is taken is dead-lettered with its headers intact, on a nack and at
max_deliveries alike. Real RabbitMQ; under the test's own prefix.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from brokerkit.exceptions import InvalidMessage
from tests.kombu_rabbitmq import rabbitmq
from tests.test_kombu_review26_frame import (
    Brokers,
    brokers,
    content_header_size,
    fixed_publish_time,
    headers_of_size,
    largest,
    room,
)

__all__ = ["brokers", "rabbitmq", "room"]

TOPIC = "near"


def test_headers_whose_dead_letter_would_not_fit_are_refused(brokers: Brokers, room: int) -> None:
    broker = brokers.sync()
    subscription = broker.subscribe(TOPIC)
    over = headers_of_size(largest(room, TOPIC) + 1, trace="abc")
    assert content_header_size(over) <= room  # the message alone fits
    with fixed_publish_time(), pytest.raises(InvalidMessage) as refused:
        broker.publish(TOPIC, b"x", headers=over)
    text = str(refused.value)
    assert f"at most {room:,}" in text and "dead letter" in text, text
    assert "nothing was published" in text, text
    assert subscription.receive(timeout=0.3) is None, "the refused message was stored"


@pytest.mark.parametrize("how", ["nack", "max_deliveries"])
def test_the_largest_taken_is_dead_lettered_with_its_headers(
    brokers: Brokers, room: int, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    broker = brokers.sync(max_deliveries=1)
    headers = headers_of_size(largest(room, TOPIC), trace="abc")
    with broker.subscribe(TOPIC, group="workers") as workers:
        with fixed_publish_time():
            broker.publish(TOPIC, b"x", headers=headers)
        delivery = workers.receive(timeout=5)
        assert delivery is not None
        with caplog.at_level(logging.WARNING, logger="brokerkit.kombu"):
            delivery.nack(requeue=how == "max_deliveries")
    assert not [r for r in caplog.records if "dropped" in r.getMessage()]
    with broker.subscribe(f"{TOPIC}.dlq") as dead:
        letter: Any = dead.receive(timeout=5)
        assert letter is not None
        assert "x-dead-letter-headers-dropped" not in letter.headers
        assert {k: letter.headers[k] for k in headers} == headers
        letter.ack()
