"""kombu+amqp: the reading connection's heartbeats while a dead letter waits on a
connection RabbitMQ blocked (review 32).

A dead letter is published (on the publishing connection) while the reading
connection's lock is held: during an alarm, for up to ``publish_timeout``. Nothing
sent the reading connection's heartbeats meanwhile (the reaper skips a link whose
lock another thread holds, counting on it to read the socket): a ``publish_timeout``
longer than two heartbeats let RabbitMQ close the reading connection as dead, and
every delivery of every subscription of the broker went with it. Now the thread that
waits sends them, at each frame (a heartbeat) the publish reads.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from brokerkit.exceptions import ConnectionFailed
from tests.kombu_rabbitmq import rabbitmq
from tests.test_kombu_review31_blocked_publish import GUARD, _Net, alarmed

__all__ = ["rabbitmq"]


@pytest.fixture
def net(rabbitmq: str) -> Iterator[_Net]:
    with alarmed(rabbitmq, stem="bkk-r32h") as made:
        yield made


def test_the_reading_connection_lives_through_a_dead_letter_blocked_by_an_alarm(
    net: _Net,
) -> None:
    # heartbeats of 2 s (RabbitMQ drops a connection silent for two): a loaded machine
    # missed 1 s ones on the reading connection; the 6 s block still outlasts two
    broker = net.broker(heartbeat=2, publish_timeout=6.0, visibility_timeout=60, max_deliveries=1)
    broker.publish("kept", b"kept")
    broker.publish("t", b"rejected")
    kept = broker.subscribe("kept").receive(timeout=GUARD)
    assert kept is not None
    doomed = broker.subscribe("t").receive(timeout=GUARD)
    assert doomed is not None
    net.alarm.on.set()
    errors = []
    try:
        doomed.nack(requeue=False)
    except Exception as exc:  # (the alarm outlasts publish_timeout)
        errors.append(exc)
    assert all(isinstance(e, ConnectionFailed) for e in errors), errors
    # (1; 2 where a loaded machine missed the 2 s heartbeats of the blocked publishing
    # connection and the publish was sent once more on a new one, blocked too)
    assert net.alarm.blocked >= 1
    net.alarm.on.clear()
    kept.ack()  # (the reading connection is the one it came on)
