"""kombu+amqp: a message whose own headers fit in one AMQP frame but whose dead letter
(three headers more) does not.

Such a message is published here the way another program (or an older brokerkit)
could: brokerkit's envelope, sent by py-amqp alone, its content header a few bytes
under the frame's limit. Neither the lease reaper nor a fetch may be stopped by it:
the other deliveries of the sweep or of the batch are handed back, dead-lettered or
handed out as usual. And the message itself is dead-lettered anyway, its own headers
dropped (``x-dead-letter-headers-dropped`` says how many), with a WARNING.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

from brokerkit._message import Message
from brokerkit._serializers import BINARY
from brokerkit.backends.kombu import _settle as kombu_settle
from brokerkit.exceptions import InvalidMessage
from tests.kombu_rabbitmq import rabbitmq, raw_connection
from tests.test_kombu_review26_frame import (
    ID_LENGTH,
    PUBLISHED_AT,
    Brokers,
    brokers,
    content_header_size,
    headers_of_size,
    publish_envelope,
    room,
)

__all__ = ["brokers", "rabbitmq", "room"]

TOPIC = "near"
#: What the message's own content header leaves of the frame's room.
SLACK = 20


def near_limit_headers(room: int) -> dict[str, str]:
    """Headers whose message fits in a frame, and whose dead letter does not."""
    headers = headers_of_size(room - SLACK, trace="abc")
    dead = {
        **headers,
        "x-dead-letter-reason": "max_deliveries",
        "x-original-topic": TOPIC,
        "x-deliveries": "1",
    }
    assert content_header_size(dead) > room
    return headers


def publish_raw(prefix: str, payload: bytes, headers: dict[str, str]) -> None:
    """Publish brokerkit's envelope of ``payload`` to TOPIC, by py-amqp alone (no
    check of brokerkit's), confirmed."""
    message_id = uuid.uuid4().hex[:ID_LENGTH].rjust(ID_LENGTH, "0")
    message = Message(message_id, TOPIC, payload, BINARY, headers, PUBLISHED_AT)
    publish_envelope(message, exchange=f"{prefix}|{TOPIC}", routing_key="")


def deliver_once_and_drop(prefix: str, count: int) -> None:
    """Take ``count`` messages from TOPIC's queue without settling them, and close the
    connection: RabbitMQ hands them back, their delivery count one higher (as when a
    consumer dies holding them)."""
    with raw_connection() as connection:
        connection.connect()
        channel = connection.connection.channel()
        for _ in range(count):
            assert channel.basic_get(f"{prefix}|{TOPIC}|default", no_ack=False) is not None


def assert_dropped_dead_letter(dead: Any, headers: dict[str, str], deliveries: str) -> None:
    assert dead is not None, "the message too near the limit was not dead-lettered"
    assert dead.payload == b"big"
    assert dead.headers == {
        "x-dead-letter-reason": "max_deliveries",
        "x-original-topic": TOPIC,
        "x-deliveries": deliveries,
        "x-dead-letter-headers-dropped": str(len(headers)),
    }


def test_the_reaper_goes_on_past_a_lease_whose_dead_letter_does_not_fit(
    brokers: Brokers, room: int, caplog: pytest.LogCaptureFixture
) -> None:
    broker = brokers.sync(visibility_timeout=1, max_deliveries=1)
    subscription = broker.subscribe(TOPIC, prefetch=2)
    dead_letters = broker.subscribe(broker.dead_letter_topic(TOPIC))
    headers = near_limit_headers(room)
    publish_raw(brokers.prefix, b"big", headers)
    publish_raw(brokers.prefix, b"small", {})
    with caplog.at_level(logging.WARNING, logger="brokerkit.kombu"):
        first = subscription.receive(timeout=5)
        second = subscription.receive(timeout=5)
        assert first is not None and second is not None
        assert [first.payload, second.payload] == [b"big", b"small"]
        # Both are left unsettled: the reaper takes their leases back, on their last
        # allowed attempt, after the big one (first in its sweep).
        got = {}
        for _ in range(2):
            dead = dead_letters.receive(timeout=20)
            assert dead is not None, f"only {sorted(got)} were dead-lettered"
            got[dead.payload] = dead
            dead.ack()
    assert got[b"small"].headers["x-dead-letter-reason"] == "max_deliveries"
    assert_dropped_dead_letter(got.get(b"big"), headers, "1")
    assert not [r for r in caplog.records if "could not sweep" in r.message]
    assert broker.inspect(TOPIC).in_flight == 0


def test_a_fetch_hands_out_the_rest_of_its_batch_past_one_whose_dead_letter_does_not_fit(
    brokers: Brokers, room: int, caplog: pytest.LogCaptureFixture
) -> None:
    broker = brokers.sync(max_deliveries=1)
    broker.subscribe(TOPIC).close()  # (declares the queue)
    headers = near_limit_headers(room)
    publish_raw(brokers.prefix, b"big", headers)
    deliver_once_and_drop(brokers.prefix, 1)  # its holder died: past max_deliveries
    publish_raw(brokers.prefix, b"small", {})
    subscription = broker.subscribe(TOPIC, prefetch=2)
    dead_letters = broker.subscribe(broker.dead_letter_topic(TOPIC))
    with caplog.at_level(logging.WARNING, logger="brokerkit.kombu"):
        delivery = subscription.receive(timeout=5)  # (raised InvalidMessage)
        assert delivery is not None and delivery.payload == b"small"
        assert delivery.attempt == 1
        delivery.ack()
        dead = dead_letters.receive(timeout=5)
    assert_dropped_dead_letter(dead, headers, "1")
    dead.ack()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [getattr(r, "message_id", None) for r in warnings] == [dead.id], warnings
    assert subscription.receive(timeout=0.3) is None
    info = broker.inspect(TOPIC)
    assert (info.in_flight, info.length) == (0, 0)


def test_a_nack_dead_letters_it_without_its_headers_and_says_so(
    brokers: Brokers, room: int, caplog: pytest.LogCaptureFixture
) -> None:
    broker = brokers.sync()
    subscription = broker.subscribe(TOPIC)
    dead_letters = broker.subscribe(broker.dead_letter_topic(TOPIC))
    headers = near_limit_headers(room)
    publish_raw(brokers.prefix, b"big", headers)
    delivery = subscription.receive(timeout=5)
    assert delivery is not None and delivery.headers == headers
    with caplog.at_level(logging.WARNING, logger="brokerkit.kombu"):
        delivery.nack(requeue=False, reason="max_deliveries")  # (raised InvalidMessage)
    dead = dead_letters.receive(timeout=5)
    assert_dropped_dead_letter(dead, headers, "1")
    dead.ack()
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.message_id == delivery.id  # type: ignore[attr-defined]
    assert "dropped" in warning.getMessage()
    assert broker.inspect(TOPIC).in_flight == 0


def test_a_dead_letter_refused_for_another_reason_is_left_to_rabbitmq(
    brokers: Brokers, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A dead letter refused for something else than its headers' size (RabbitMQ's
    ``max_message_size``, say: here a seam refuses it) is not re-sent without its
    headers, which would be refused again: the message is rejected without requeue,
    and RabbitMQ dead-letters it to the same topic itself."""
    broker = brokers.sync()
    subscription = broker.subscribe(TOPIC)
    dead_letters = broker.subscribe(broker.dead_letter_topic(TOPIC))
    broker.publish(TOPIC, b"refused", headers={"trace": "abc"})
    delivery = subscription.receive(timeout=5)
    assert delivery is not None
    sent = []

    def refuse(*args: Any, **kwargs: Any) -> None:
        sent.append(args)
        raise InvalidMessage("over RabbitMQ's max_message_size")

    monkeypatch.setattr(kombu_settle, "send_transacted", refuse)
    with caplog.at_level(logging.WARNING, logger="brokerkit.kombu"):
        delivery.nack(requeue=False)
    monkeypatch.undo()
    assert len(sent) == 1  # not tried again without its headers
    dead = dead_letters.receive(timeout=5)  # dead-lettered by RabbitMQ itself
    assert dead is not None and dead.payload == b"refused"
    dead.ack()
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "rejected without requeue" in warning.getMessage()
    assert broker.inspect(TOPIC).in_flight == 0
