"""kombu+amqp: a dead letter's reason is cut to fit before the message's own headers
are dropped.

A publish keeps room in the frame for the dead-letter headers with the reason
``max_deliveries`` (review 28), but the Worker dead-letters with the handler's error
text as the reason (up to 1,000 characters; ``invalid body: ...``), and so may a
``nack(reason=...)``. Such a dead letter of a message whose headers just fit did not
fit in one frame: it was dead-lettered with all its own headers dropped
(``x-dead-letter-headers-dropped``, a WARNING). The reason is now cut first, as much of
it as fits followed by ``[truncated]``; the message's headers are dropped only if even
that does not fit. Real RabbitMQ; under the test's own prefix.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

import brokerkit
from tests.kombu_rabbitmq import rabbitmq
from tests.test_kombu_review26_frame import (
    Brokers,
    brokers,
    fixed_publish_time,
    headers_of_size,
    largest,
    room,
)
from tests.test_kombu_review26b_dead_letter_frame import near_limit_headers, publish_raw
from tests.waiting import wait_until

__all__ = ["brokers", "rabbitmq", "room"]

TOPIC = "near"
ERROR = "order 1234 has no customer email address"
MARKER = "[truncated]"


def _dead_letter(broker: Any) -> Any:
    with broker.subscribe(f"{TOPIC}.dlq") as dead:
        letter = dead.receive(timeout=10)
        assert letter is not None, "nothing was dead-lettered"
        letter.ack()
    return letter


def _assert_headers_kept(letter: Any, headers: dict[str, str], reason: str) -> None:
    assert "x-dead-letter-headers-dropped" not in letter.headers, "its headers were dropped"
    assert {k: letter.headers[k] for k in headers} == headers
    cut = letter.headers["x-dead-letter-reason"]
    assert cut.endswith(MARKER), cut
    assert reason.startswith(cut[: -len(MARKER)]), cut
    assert letter.headers["x-original-topic"] == TOPIC
    assert letter.headers["x-deliveries"] == "1"


def test_a_worker_handler_error_cuts_the_reason_and_keeps_the_headers(
    brokers: Brokers, room: int, caplog: pytest.LogCaptureFixture
) -> None:
    broker = brokers.sync(max_deliveries=1)
    headers = headers_of_size(largest(room, TOPIC), trace="abc")
    broker.subscribe(TOPIC, group="workers").close()  # (the group's queue, declared)
    with fixed_publish_time():
        broker.publish(TOPIC, b"x", headers=headers)
    worker = brokerkit.Worker(broker)
    calls: list[str] = []

    @worker.handler(TOPIC, group="workers")
    def fail(delivery: brokerkit.Delivery) -> None:
        calls.append(delivery.id)
        raise ValueError(ERROR)

    with caplog.at_level(logging.WARNING, logger="brokerkit.kombu"), worker.running():
        wait_until(lambda: broker.inspect(TOPIC).dead_lettered == 1, "the dead letter", within=20)
    assert len(calls) == 1
    assert not [r for r in caplog.records if "dropped" in r.getMessage()], caplog.text
    _assert_headers_kept(_dead_letter(broker), headers, f"ValueError: {ERROR}")


@pytest.mark.parametrize("requeue", [False, True])
def test_a_long_nack_reason_is_cut_and_the_headers_kept(
    brokers: Brokers, room: int, requeue: bool, caplog: pytest.LogCaptureFixture
) -> None:
    broker = brokers.sync(max_deliveries=1)
    headers = headers_of_size(largest(room, TOPIC), trace="abc")
    reason = "é" * 1000  # (two bytes a character in UTF-8)
    with broker.subscribe(TOPIC, group="workers") as workers:
        with fixed_publish_time():
            broker.publish(TOPIC, b"x", headers=headers)
        delivery = workers.receive(timeout=5)
        assert delivery is not None
        with caplog.at_level(logging.WARNING, logger="brokerkit.kombu"):
            delivery.nack(requeue=requeue, reason=reason)
    assert not [r for r in caplog.records if "dropped" in r.getMessage()], caplog.text
    _assert_headers_kept(_dead_letter(broker), headers, reason)


def test_a_reason_that_fits_is_not_cut(brokers: Brokers, room: int) -> None:
    broker = brokers.sync(max_deliveries=1)
    headers = headers_of_size(largest(room, TOPIC) - 200, trace="abc")
    with broker.subscribe(TOPIC, group="workers") as workers:
        with fixed_publish_time():
            broker.publish(TOPIC, b"x", headers=headers)
        delivery = workers.receive(timeout=5)
        assert delivery is not None
        delivery.nack(requeue=False, reason=ERROR)
    letter = _dead_letter(broker)
    assert letter.headers["x-dead-letter-reason"] == ERROR
    assert {k: letter.headers[k] for k in headers} == headers


def test_headers_are_dropped_only_when_not_even_the_marker_fits(
    brokers: Brokers, room: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A message another program published, its headers filling the frame (no room
    for even a cut reason): its dead letter has no headers of its own, and its
    reason whole."""
    broker = brokers.sync()
    headers = near_limit_headers(room)
    with broker.subscribe(TOPIC) as subscription:
        publish_raw(brokers.prefix, b"big", headers)
        delivery = subscription.receive(timeout=5)
        assert delivery is not None and delivery.headers == headers
        with caplog.at_level(logging.WARNING, logger="brokerkit.kombu"):
            delivery.nack(requeue=False, reason=ERROR)
    assert [r for r in caplog.records if "dropped" in r.getMessage()], caplog.text
    letter = _dead_letter(broker)
    assert letter.headers == {
        "x-dead-letter-reason": ERROR,
        "x-original-topic": TOPIC,
        "x-deliveries": "1",
        "x-dead-letter-headers-dropped": str(len(headers)),
    }
