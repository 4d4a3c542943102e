"""kombu+amqp: a dead letter RabbitMQ refuses with ``basic.nack`` (a queue bound to the
dead-letter topic is full and rejects publishes: an operator's ``max-length`` policy
with ``overflow: reject-publish``) is a refusal like any other: the delivery is
rejected without requeue, for RabbitMQ to dead-letter it itself, and the lease
reaper's sweep and a fetch's batch carry on past it. It raised ConnectionFailed out
of the reaper's sweep (every expired lease after it, of any subscription, stayed out
for good), out of a fetch (the rest of its batch stayed held, not handed out) and out
of nack (the delivery stayed held). Real RabbitMQ: a handful of names under the test's
own prefix, deleted at the end."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.kombu_rabbitmq import delete_names, kombu_broker, rabbitmq, raw_connection
from tests.test_kombu_review26_frame import Brokers, brokers, room
from tests.test_kombu_review26b_dead_letter_frame import (
    TOPIC as NEAR_TOPIC,
)
from tests.test_kombu_review26b_dead_letter_frame import (
    near_limit_headers,
    publish_raw,
)

__all__ = ["brokers", "kombu_broker", "rabbitmq", "room"]

Factory = Callable[..., Any]
TOPIC = NEAR_TOPIC  # (the frame tests' publish_raw publishes there)


@pytest.fixture
def full_dead_letter_queue(rabbitmq: str) -> Iterator[Callable[[str], None]]:
    """``block(prefix)``: bind to the dead-letter topic of TOPIC under ``prefix`` a queue
    that refuses every publish (x-max-length 0, reject-publish); deleted at the end."""
    made: list[str] = []

    def block(prefix: str) -> None:
        queue = f"{prefix}|{TOPIC}.dlq|full"
        with raw_connection() as connection:
            channel = connection.channel()
            channel.queue_declare(
                queue,
                durable=False,
                auto_delete=False,
                arguments={"x-max-length": 0, "x-overflow": "reject-publish"},
            )
            made.append(queue)
            channel.queue_bind(queue, f"{prefix}|{TOPIC}.dlq", routing_key="")
            channel.close()

    yield block
    delete_names(set(), set(made))


def _dead_letters(broker: Any, bodies: set[str]) -> list[Any]:
    """The dead letters of TOPIC until one of each of ``bodies`` came (a refused dead
    letter may come twice: the queues that took it, then RabbitMQ's own)."""
    got: list[Any] = []
    with broker.subscribe(f"{TOPIC}.dlq") as dead:
        while not bodies <= {letter.payload.decode() for letter in got}:
            letter = dead.receive(timeout=10)
            assert letter is not None, f"no dead letter of each of {bodies}: {got}"
            assert len(got) < 2 * len(bodies), f"dead-lettered again and again: {got}"
            got.append(letter)
            letter.ack()
    return got


def test_the_reaper_goes_on_past_a_dead_letter_rabbitmq_refuses(
    kombu_broker: Factory,
    full_dead_letter_queue: Callable[[str], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 2 s, not 0.5: the warm-up is received and acked under that lease (a loaded
    # machine may take 0.5 s in between); 'a' and 'b' still run out, unsettled
    broker = kombu_broker(visibility_timeout=2.0, max_deliveries=1)
    broker.publish(TOPIC, "warm-up")  # declares the dead-letter topic
    full_dead_letter_queue(broker.options.prefix)
    with broker.subscribe(TOPIC) as first:
        warm = first.receive(timeout=5)
        assert warm is not None
        warm.ack()
        broker.publish_many(TOPIC, ["a", "b"])
        held = [first.receive(timeout=5), first.receive(timeout=5)]
        assert all(d is not None for d in held)
        with caplog.at_level(logging.WARNING, logger="brokerkit.kombu"):
            # Both leases run out on their last attempt: both are dead-lettered.
            letters = _dead_letters(broker, {"a", "b"})
    for letter in letters:
        assert letter.headers["x-original-topic"] == TOPIC
    assert "could not be dead-lettered" in caplog.text


def test_a_nack_whose_dead_letter_rabbitmq_refuses_settles_it(
    kombu_broker: Factory, full_dead_letter_queue: Callable[[str], None]
) -> None:
    broker = kombu_broker()
    broker.publish(TOPIC, "warm-up")
    full_dead_letter_queue(broker.options.prefix)
    with broker.subscribe(TOPIC) as jobs:
        first = jobs.receive(timeout=5)
        assert first is not None and first.body == "warm-up"
        first.nack(requeue=False)  # raised ConnectionFailed, the delivery still held
        assert first.settled
    for letter in _dead_letters(broker, {"warm-up"}):
        assert letter.headers["x-original-topic"] == TOPIC


def test_a_dead_letter_refused_once_its_headers_are_dropped_is_left_to_rabbitmq(
    brokers: Brokers,
    room: int,
    full_dead_letter_queue: Callable[[str], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Too big for a frame with its dead-letter headers, then refused (basic.nack)
    without its own: rejected without requeue all the same."""
    broker = brokers.sync()
    subscription = broker.subscribe(TOPIC)
    full_dead_letter_queue(brokers.prefix)
    publish_raw(brokers.prefix, b"big", near_limit_headers(room))
    delivery = subscription.receive(timeout=5)
    assert delivery is not None and delivery.payload == b"big"
    with caplog.at_level(logging.WARNING, logger="brokerkit.kombu"):
        delivery.nack(requeue=False)  # raised ConnectionFailed, the delivery still held
    assert delivery.settled
    assert "rejected without requeue" in caplog.text
    letters = _dead_letters(broker, {"big"})
    assert all(letter.payload == b"big" for letter in letters)
