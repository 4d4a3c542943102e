"""kombu+amqp: a receive that finds a message past ``max_deliveries`` (its last holder
died with it) during a memory or disk alarm (review 32).

The receive dead-letters such a message instead of handing it out, by publishing it
to the dead-letter topic, which RabbitMQ blocks during an alarm: the receive raised
ConnectionFailed after ``publish_timeout``, telling the consumer to "publish them
again" (it published nothing), and what it had taken with it stayed leased, handed to
nobody, until the visibility timeout. Now it is rejected without requeue, for
RabbitMQ to dead-letter it itself, as the reaper's are (see
test_kombu_review32_reaper_blocked_dead_letter), and the receive hands out the rest.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import brokerkit
from tests.kombu_rabbitmq import close_and_delete, rabbitmq
from tests.test_kombu_review31_blocked_publish import GUARD, _Net, alarmed

__all__ = ["rabbitmq"]


@pytest.fixture
def net(rabbitmq: str) -> Iterator[_Net]:
    with alarmed(rabbitmq, stem="bkk-r32f") as made:
        yield made


def test_a_receive_during_an_alarm_dead_letters_a_message_past_max_deliveries(
    rabbitmq: str, net: _Net
) -> None:
    # (straight to RabbitMQ: reading is not blocked during an alarm)
    observer = brokerkit.connect(rabbitmq, prefix=net.prefix)
    try:
        first = net.broker(max_deliveries=1)
        first.publish("t", b"poison")
        first.publish("t", b"fine")
        dead = observer.subscribe("t.dlq")
        taken = first.subscribe("t").receive(timeout=GUARD)
        assert taken is not None and taken.body == b"poison"
        first.close()  # (dies holding it: RabbitMQ counts that delivery)
        # (publish_timeout 2 s, not 0.5: "warm" is confirmed within it, on a loaded
        # machine too; the fetch's dead letter during the alarm runs out of it)
        broker = net.broker(publish_timeout=2.0, max_deliveries=1)
        broker.publish("t", b"warm")  # (the publishing connection is open)
        net.alarm.on.set()
        subscription = broker.subscribe("t", prefetch=3)
        delivery = subscription.receive(timeout=GUARD)  # (not the poison: past its limit)
        assert delivery is not None and delivery.body == b"fine"
        delivery.ack()
        letter = dead.receive(timeout=GUARD)
        assert letter is not None and letter.body == b"poison"
        letter.ack()
        net.alarm.on.clear()
        following = subscription.receive(timeout=GUARD)
        assert following is not None and following.body == b"warm"
        following.ack()
        subscription.close()
        # The publish that timed out may be stored once the alarm clears: that copy
        # at most.
        extra = []
        while (copy := dead.receive(timeout=1.0)) is not None:
            extra.append(copy.body)
            copy.ack()
        assert extra in ([], [b"poison"]), extra
        dead.close()
    finally:
        net.alarm.on.clear()
        close_and_delete([observer])
