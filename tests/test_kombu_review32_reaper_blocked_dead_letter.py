"""kombu+amqp: a lease that runs out on its last allowed attempt during a memory or
disk alarm is dead-lettered during the alarm, once (review 32).

The reaper dead-letters such a delivery by publishing it to the dead-letter topic,
which RabbitMQ blocks during an alarm. That publish raised ConnectionFailed after
``publish_timeout``, out of the whole sweep: the delivery stayed held, and every
sweep after it published it once more on a new connection (blocked in turn), each
holding the reading connection's lock for ``publish_timeout``, for as long as the
alarm lasted: the dead letter never came during the alarm, and every copy RabbitMQ
read once it cleared could be stored. Now a dead letter of the reaper that times out
is rejected without requeue instead, for RabbitMQ to dead-letter it itself (which an
alarm does not stop), and the reaper's later ones go the same way without a publish
until one is confirmed again (or for a minute).
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
    with alarmed(rabbitmq, stem="bkk-r32") as made:
        yield made


def test_a_lease_run_out_on_its_last_attempt_during_an_alarm_is_dead_lettered_once(
    rabbitmq: str, net: _Net
) -> None:
    # publish_timeout 2 s, not 0.5: the two before the alarm are confirmed within it;
    # leases of 2 s, not 0.2: they run out after the alarm is on (a loaded machine
    # may take 0.2 s from the first receive to it), as the test needs
    broker = net.broker(publish_timeout=2.0, visibility_timeout=2.0, max_deliveries=1)
    # (straight to RabbitMQ: reading is not blocked during an alarm)
    observer = brokerkit.connect(rabbitmq, prefix=net.prefix)
    try:
        broker.publish("t", b"first")
        broker.publish("t", b"second")
        dead = observer.subscribe("t.dlq")
        subscription = broker.subscribe("t")
        held = [subscription.receive(timeout=GUARD) for _ in range(2)]
        assert [d.body for d in held if d is not None] == [b"first", b"second"]
        net.alarm.on.set()
        # Neither is settled: their leases run out, on their last allowed attempt.
        letters = {}
        for _ in range(2):
            letter = dead.receive(timeout=GUARD)
            assert letter is not None, f"only {letters!r} were dead-lettered during the alarm"
            letters[letter.id] = letter.body
            assert letter.headers["x-original-topic"] == "t"
            letter.ack()
        assert sorted(letters.values()) == [b"first", b"second"]
        # (one publish: the one that timed out; none for the other)
        assert net.alarm.blocked == 1, "the reaper published its dead letters again"
        net.alarm.on.clear()
        broker.publish("t", b"after")  # (a new connection)
        later = subscription.receive(timeout=GUARD)
        assert later is not None and later.body == b"after"
        later.ack()
        # The publish that timed out may be stored once the alarm clears: that copy
        # at most, not one per sweep of the alarm.
        extra = []
        while (copy := dead.receive(timeout=1.0)) is not None:
            extra.append(copy.id)
            copy.ack()
        assert len(extra) <= 1 and set(extra) <= set(letters), extra
        subscription.close()
        dead.close()
    finally:
        net.alarm.on.clear()
        close_and_delete([observer])
