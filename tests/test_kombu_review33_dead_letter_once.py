"""kombu+amqp: a dead letter whose publish runs out of ``publish_timeout`` during a
memory or disk alarm is stored once, not a second time once the alarm clears
(review 33).

RabbitMQ stops reading a publishing connection during an alarm, and reads what it
holds of it once the alarm clears, a connection the client dropped too. A dead letter
nobody asked for (the lease reaper's) whose publish timed out is rejected without
requeue, for RabbitMQ to dead-letter it itself: the publish that timed out was stored
as well once RabbitMQ read it, the message then twice in the dead-letter topic. A
``nack(requeue=False)`` whose dead letter timed out (ConnectionFailed, the message
still held) and that is nacked again after the alarm stored it twice the same way.
The alarm is played by the :class:`Alarm` proxy of review 31, which, once the alarm
clears, forwards what it held of a connection, as RabbitMQ reads it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import brokerkit
from brokerkit.exceptions import ConnectionFailed
from tests.kombu_rabbitmq import close_and_delete, rabbitmq
from tests.test_kombu_review31_blocked_publish import GUARD, Alarm, _Net, alarmed
from tests.waiting import wait_until

__all__ = ["rabbitmq"]


class _CountingAlarm(Alarm):
    """An :class:`Alarm` that counts the connections it blocked whose client side it
    has forwarded to the end (:attr:`ended`): what the client sent before it dropped
    the connection has reached RabbitMQ."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.ended = 0
        self._count = threading.Lock()
        self._blocking = threading.local()
        super().__init__(target)

    def _block(self, frame: bytes, *args: Any) -> None:
        self._blocking.on = True
        super()._block(frame, *args)

    def _up(self, client: socket.socket, upstream: socket.socket, lock: threading.Lock) -> None:
        try:
            super()._up(client, upstream, lock)
        finally:
            if getattr(self._blocking, "on", False):
                with self._count:
                    self.ended += 1


@pytest.fixture
def net(rabbitmq: str) -> Iterator[_Net]:
    with alarmed(rabbitmq, _CountingAlarm, stem="bkk-r33d") as made:
        yield made


def _forwarded(net: _Net, connections: int) -> None:
    """Wait until the proxy has forwarded ``connections`` blocked client connections
    to their end (what they held reached RabbitMQ)."""
    alarm: Any = net.alarm
    wait_until(lambda: alarm.ended >= connections, "the dropped connection's end", within=GUARD)


def _letters(dead: Any) -> list[bytes]:
    """The dead letters that come to ``dead``, until none comes for a while."""
    got = []
    while (letter := dead.receive(timeout=2.0)) is not None:
        got.append(letter.body)
        letter.ack()
    return got


def test_a_dead_letter_of_the_reaper_timed_out_during_an_alarm_is_stored_once(
    rabbitmq: str, net: _Net
) -> None:
    # (publish_timeout: long enough for a loaded machine's first publish)
    # (leases of 2 s, not 0.2: it runs out once the alarm is on; a loaded machine may
    # take 0.2 s from the receive to it)
    broker = net.broker(publish_timeout=5.0, visibility_timeout=2.0, max_deliveries=1)
    # (straight to RabbitMQ: reading is not blocked during an alarm)
    observer = brokerkit.connect(rabbitmq, prefix=net.prefix)
    try:
        broker.publish("t", b"only")
        dead = observer.subscribe("t.dlq")
        subscription = broker.subscribe("t")
        held = subscription.receive(timeout=GUARD)
        assert held is not None and held.body == b"only"
        net.alarm.on.set()
        # Not settled: its lease runs out on its last allowed attempt.
        letter = dead.receive(timeout=GUARD)
        assert letter is not None and letter.body == b"only"
        letter.ack()
        assert net.alarm.blocked == 1
        net.alarm.on.clear()
        _forwarded(net, 1)  # (the dropped connection's publish reached RabbitMQ)
        broker.publish("t", b"after")  # (a new connection)
        later = subscription.receive(timeout=GUARD)
        assert later is not None and later.body == b"after"
        later.ack()
        assert _letters(dead) == [], "the dead letter was stored twice"
        subscription.close()
        dead.close()
    finally:
        net.alarm.on.clear()
        close_and_delete([observer])


def test_a_nack_whose_dead_letter_timed_out_and_nacked_again_is_stored_once(
    rabbitmq: str, net: _Net
) -> None:
    broker = net.broker(publish_timeout=5.0)  # (long enough for a loaded machine)
    observer = brokerkit.connect(rabbitmq, prefix=net.prefix)
    try:
        broker.publish("t", b"only")
        dead = observer.subscribe("t.dlq")
        subscription = broker.subscribe("t")
        held = subscription.receive(timeout=GUARD)
        assert held is not None and held.body == b"only"
        net.alarm.on.set()
        with pytest.raises(ConnectionFailed, match="publish_timeout"):
            held.nack(requeue=False)
        net.alarm.on.clear()
        _forwarded(net, 1)
        held.nack(requeue=False)  # (still held: nacked again)
        assert _letters(dead) == [b"only"], "the dead letter was stored twice"
        assert subscription.receive(timeout=0.5) is None
        subscription.close()
        dead.close()
    finally:
        net.alarm.on.clear()
        close_and_delete([observer])
