"""Dead letters collect at the last level: a topic that ends with MAX_DEAD_LETTER_LEVELS
(10) ``.dlq`` suffixes is its own dead-letter topic (review 31).

Topic names may carry at most 10 ``.dlq`` suffixes beyond their 200 characters, but the
dead-letter topic of such a topic was ``<topic>.dlq`` everywhere: redis+list and
redis+stream dead-lettered a 10-level topic's rejects into an 11-level name that no
call accepts (the dead letters were out of reach), and a memory pattern subscription
that dead-lettered what it got grew its topic names without end (``orders.dlq`` ...
79 levels, 317 characters, after 80 nacks). Now a message rejected on the last level
comes back to that same topic, as a new dead letter with its reason: nothing is lost,
nothing jams, no name grows past what ``check_topic`` accepts.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import brokerkit
from brokerkit import Unsupported
from brokerkit._topics import (
    MAX_DEAD_LETTER_LEVELS,
    MAX_TOPIC_LENGTH,
    check_topic,
    dead_letter_topic_of,
    is_topic,
)
from tests.nats_server import nats

__all__ = ["nats"]  # a fixture

#: Seconds a receive may wait at most: a hang guard, never a pace.
GUARD = 15.0
DLQ = ".dlq"
BACKENDS = ["memory", "redis+list", "redis+list-template", "redis+stream", "nats"]


def _levels(topic: str) -> int:
    levels = 0
    while topic.endswith(DLQ):
        topic, levels = topic[: -len(DLQ)], levels + 1
    return levels


@pytest.fixture(params=BACKENDS)
def make(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``make(**options)``: a new broker of the backend under test, closed at the end
    (one memory store for the test: ``memory://<unique name>``)."""
    made: list[Any] = []
    kind = request.param
    if kind == "memory":
        url = f"memory://dlq-last-{uuid.uuid4().hex[:12]}"

        def factory(**options: Any) -> Any:
            broker = brokerkit.connect(url, **options)
            made.append(broker)
            return broker

    elif kind == "nats":
        nats_factory: Callable[..., Any] = request.getfixturevalue("nats")

        def factory(**options: Any) -> Any:
            return nats_factory(**options)

    else:
        redis_factory: Callable[..., Any] = request.getfixturevalue("redis_broker")
        scheme = kind.removesuffix("-template")
        if kind.endswith("-template"):
            tag = uuid.uuid4().hex[:12]

            def factory(**options: Any) -> Any:
                return redis_factory(scheme, queue_key=f"q{tag}:*", **options)

        else:

            def factory(**options: Any) -> Any:
                return redis_factory(scheme, **options)

    yield factory
    for broker in made:
        broker.close()


def _last_level() -> str:
    return f"last-{uuid.uuid4().hex[:12]}" + DLQ * MAX_DEAD_LETTER_LEVELS


def _listed(broker: brokerkit.Broker) -> list[str] | None:
    try:
        return broker.topics()
    except Unsupported:
        return None


def test_the_last_level_is_its_own_dead_letter_topic() -> None:
    stem = "a" * MAX_TOPIC_LENGTH
    nine, ten = stem + DLQ * 9, stem + DLQ * 10
    with brokerkit.connect("memory://") as broker:
        assert broker.dead_letter_topic(nine) == ten
        assert broker.dead_letter_topic(ten) == ten
        assert broker.dead_letter_topic("orders") == "orders.dlq"
        short = "o" + DLQ * (MAX_DEAD_LETTER_LEVELS + 2)  # valid: short enough anyway
        assert broker.dead_letter_topic(short) == short
    for topic in (nine, ten, "orders", "orders.dlq"):
        assert dead_letter_topic_of(topic) == broker.dead_letter_topic(topic)
        assert is_topic(dead_letter_topic_of(topic))


def test_a_rejected_message_comes_back_to_its_own_topic(make: Callable[..., Any]) -> None:
    broker = make()
    topic = _last_level()
    assert broker.dead_letter_topic(topic) == topic
    with broker.subscribe(topic) as subscription:
        sent = broker.publish(topic, {"n": 1}, headers={"k": "v"})
        first = subscription.receive(timeout=GUARD)
        assert first is not None and first.id == sent
        first.nack(requeue=False, reason="bad input")
        again = subscription.receive(timeout=GUARD)
        assert again is not None, "the dead letter was lost (sent to an 11-level name?)"
        assert again.topic == topic
        assert again.body == {"n": 1}
        assert again.headers.get("k") == "v"
        assert again.headers.get("x-dead-letter-reason") == "bad input"
        assert again.headers.get("x-original-topic") == topic
        # and again: a dead letter of the last level rejected once more stays there
        again.nack(requeue=False, reason="still bad")
        third = subscription.receive(timeout=GUARD)
        assert third is not None and third.topic == topic
        assert third.headers.get("x-dead-letter-reason") == "still bad"
        third.ack()
        # nothing jammed: the topic goes on
        later = broker.publish(topic, "next")
        fourth = subscription.receive(timeout=GUARD)
        assert fourth is not None and fourth.id == later
        fourth.ack()
        assert subscription.receive(timeout=0.5) is None
    listed = _listed(broker)
    if listed is not None:
        assert topic + DLQ not in listed
        assert all(is_topic(name) for name in listed), listed


def test_max_deliveries_on_the_last_level_dead_letters_to_itself(
    make: Callable[..., Any],
) -> None:
    broker = make(max_deliveries=1)
    topic = _last_level()
    with broker.subscribe(topic) as subscription:
        broker.publish(topic, "poison")
        first = subscription.receive(timeout=GUARD)
        assert first is not None
        first.nack(requeue=True)
        dead = subscription.receive(timeout=GUARD)
        assert dead is not None, "the dead letter was lost"
        assert dead.topic == topic and dead.body == "poison"
        assert dead.headers.get("x-dead-letter-reason") == "max_deliveries"
        assert dead.headers.get("x-original-topic") == topic
        dead.ack()


def test_a_lease_that_runs_out_at_max_deliveries_dead_letters_to_itself(
    make: Callable[..., Any],
) -> None:
    hung = make(max_deliveries=1, visibility_timeout=1.0)
    rescuer = make(max_deliveries=1, visibility_timeout=1.0)
    topic = _last_level()
    held = hung.subscribe(topic)
    theirs = rescuer.subscribe(topic)
    hung.publish(topic, "crashes its consumer")
    first = held.receive(timeout=GUARD)
    assert first is not None
    suspend = getattr(hung, "_suspend_renewals", None)
    if callable(suspend):
        suspend()
    dead = theirs.receive(timeout=GUARD)  # once the lease ran out and was rescued
    assert dead is not None, "the dead letter was lost"
    assert dead.topic == topic and dead.body == "crashes its consumer"
    assert dead.headers.get("x-dead-letter-reason") == "max_deliveries"
    assert dead.headers.get("x-original-topic") == topic
    dead.ack()
    assert theirs.receive(timeout=0.5) is None


def test_a_memory_pattern_that_dead_letters_what_it_gets_never_grows_names() -> None:
    base = f"grow-{uuid.uuid4().hex[:8]}"
    with brokerkit.connect("memory://") as broker:
        seen = []
        with broker.subscribe(f"{base}*", pattern=True) as subscription:
            broker.publish(base, "x")
            for _ in range(3 * MAX_DEAD_LETTER_LEVELS):
                delivery = subscription.receive(timeout=GUARD)
                assert delivery is not None
                seen.append(delivery.topic)
                delivery.nack(requeue=False, reason="no")
        for name in [*seen, *broker.topics()]:
            check_topic(name)
            assert _levels(name) <= MAX_DEAD_LETTER_LEVELS, name
        last = base + DLQ * MAX_DEAD_LETTER_LEVELS
        assert seen[: MAX_DEAD_LETTER_LEVELS + 1] == [base + DLQ * n for n in range(11)]
        assert seen[MAX_DEAD_LETTER_LEVELS:] == [last] * (2 * MAX_DEAD_LETTER_LEVELS)
