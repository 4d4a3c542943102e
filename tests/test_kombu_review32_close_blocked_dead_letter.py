"""kombu+amqp: a subscription closed during a memory or disk alarm, with deliveries
on their last allowed attempt in its buffer (review 32).

A close hands back what the subscription fetched and never returned, and
dead-letters those on their last allowed attempt (the hand-back counts one on
RabbitMQ). During an alarm the first such dead letter's publish ran out of
``publish_timeout`` and ended the hand-back there, quietly: that message went into
a publish that may or may not be stored once the alarm clears, and the rest stayed
leased to nobody until the visibility timeout. Now each is rejected without requeue
for RabbitMQ to dead-letter it itself, as the reaper's and a receive's are (see
test_kombu_review32_reaper_blocked_dead_letter).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import brokerkit
from tests.kombu_rabbitmq import close_and_delete, rabbitmq
from tests.test_kombu_review31_blocked_publish import _Net, alarmed

__all__ = ["rabbitmq"]

#: Seconds a wait here may take at most: shorter than the visibility timeout, so
#: that what the reaper would hand back does not come within it.
GUARD = 30.0


@pytest.fixture
def net(rabbitmq: str) -> Iterator[_Net]:
    with alarmed(rabbitmq, stem="bkk-r32c") as made:
        yield made


def test_a_close_during_an_alarm_dead_letters_its_buffer_on_the_last_attempt(
    rabbitmq: str, net: _Net
) -> None:
    # (straight to RabbitMQ: reading is not blocked during an alarm)
    observer = brokerkit.connect(rabbitmq, prefix=net.prefix)
    try:
        # (publish_timeout 2 s, not 0.5: the three before the alarm are confirmed
        # within it, on a loaded machine too; the close's dead letter runs out of it)
        broker = net.broker(publish_timeout=2.0, max_deliveries=1, visibility_timeout=300)
        for body in (b"one", b"two", b"three"):
            broker.publish("t", body)
        dead = observer.subscribe("t.dlq")
        subscription = broker.subscribe("t", prefetch=3)
        first = subscription.receive(timeout=GUARD)
        assert first is not None and first.body == b"one"
        first.ack()
        net.alarm.on.set()
        subscription.close()  # (two and three fetched, never returned)
        letters = []
        for _ in range(2):
            letter = dead.receive(timeout=GUARD)
            assert letter is not None, f"only {letters!r} were dead-lettered during the alarm"
            letters.append(letter.body)
            letter.ack()
        assert sorted(letters) == [b"three", b"two"]
        net.alarm.on.clear()
        dead.close()
    finally:
        net.alarm.on.clear()
        close_and_delete([observer])
